"""Subcommands of ``hf-bridges``: one module each, exposing ``register(subparsers)``.

Modules import their heavy dependencies inside the command function, so ``hf-bridges --help`` stays fast.
"""
