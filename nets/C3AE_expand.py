#!/usr/bin/env python
"""Train, evaluate (-test) or freeze (-fz) the C3AE age + gender model.

Example: python nets/C3AE_expand.py --dataset dataset/data --source utk -se -white -s runs/c3ae_age_gender.keras
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets.training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], __doc__, gender=True))
