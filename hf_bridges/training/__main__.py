"""``python -m hf_bridges.training CONFIG [key=value ...]``: what every launcher (accelerate, torchrun) runs."""

import sys

from .run import main

sys.exit(main())
