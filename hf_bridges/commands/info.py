"""``hf-bridges info``: the registered projections, aggregations, normalisations and poolings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info", help="list the registered projections, aggregations and poolings, and the l1 / linf kernel in use"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..modeling.head import ABS_TRANSFORMS, AGGREGATIONS, POOLINGS, PROJECTIONS, SUBSPACE_NORMS

    print("projections:")
    for projection in PROJECTIONS.values():
        print(f"  {projection.name:<10} invariant to {projection.invariant_to}")
    print("aggregations:  ", ", ".join(sorted(AGGREGATIONS)))
    print("abs transforms:", ", ".join(sorted(ABS_TRANSFORMS)))
    print("subspace norms:", ", ".join(sorted(SUBSPACE_NORMS)))
    print("poolings:      ", ", ".join(sorted(POOLINGS)))
    print("l1 / linf kernels on CPU:", _kernels())
    return 0


def _kernels() -> str:
    from .. import fused_pairwise

    if fused_pairwise.available():
        import numba

        return f"fused (numba {numba.__version__}; {fused_pairwise.ENV}=0 for the torch one)"
    return "torch, chunked (pip install 'hf_bridges[fast]' for the fused numba kernels, 3x faster again)"
