"""``hf-bridges offline-seed``: place the packaged encoders into the HF cache under their real Hub ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..offline import ASSETS, asset_groups  # light: no torch/transformers at import time

    parser = subparsers.add_parser(
        "offline-seed",
        help="place packaged pretrained encoders into the Hugging Face cache under their real Hub ids",
        description="Places the default encoders ("
        + ", ".join(a.repo_id for a in ASSETS.values() if a.group == "default")
        + "); optional groups add more.",
    )
    for group in asset_groups():
        if group != "default":
            names = ", ".join(a.repo_id for a in ASSETS.values() if a.group == group)
            parser.add_argument(f"--{group}", action="store_true", help=f"also place {names}")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="ASSET",
        choices=sorted(ASSETS),
        help=f"place only these assets ({', '.join(sorted(ASSETS))})",
    )
    parser.add_argument(
        "--install",
        action="store_true",
        help="pip-install (--no-deps) the packages that carry the weights when missing",
    )
    parser.add_argument("--cache-dir", default=None, help="HF hub cache (default: huggingface_hub's HF_HUB_CACHE)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..offline import ASSETS, NotOursError, default_cache_dir, place_asset

    if args.only:
        names = list(args.only)
    else:
        names = [n for n, a in ASSETS.items() if a.group == "default" or getattr(args, a.group, False)]
    cache = args.cache_dir or default_cache_dir()
    print(f"HF cache: {cache}")
    failures = 0
    if args.install:
        from ..offline import install_packages, missing_packages

        install_packages(sorted({p for n in names for p in missing_packages(ASSETS[n])}))
    for name in names:
        try:
            result = place_asset(name, cache)
        except NotOursError as error:
            print(f"  skipped  {ASSETS[name].repo_id}: {error}")
            continue
        except OSError as error:
            print(f"  FAILED   {ASSETS[name].repo_id}: {error}")
            failures += 1
            continue
        extra = f" ({len(result.files)} files)" if result.files else ""
        print(f"  {result.status:<15} {result.repo_id}@{result.revision[:10]} -> {result.path}{extra}")
    return 1 if failures else 0
