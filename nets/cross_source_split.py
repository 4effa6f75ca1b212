#!/usr/bin/env python
"""Write a cross-source split: train on one source, validate on another (issue 25).

  python nets/cross_source_split.py model/c3ae_utk_asia_age_gender.split.json --train utk --val asia \\
      -o runs/xs/utk2asia/m.split.json
  python nets/C3AE_expand.py --source 'utk|asia' ... -s runs/xs/utk2asia/m.keras   # uses the split beside it

The training side is the --train source's faces of the split's training side, the validation side
the --val source's faces of its validation side (the faces of that source's numbers in the usual
split, now seen by a model that never trained on that source). Train from scratch: a model
fine-tuned from one trained on both sources has seen faces of both kinds.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("split", help="the usual split (NAME.split.json)")
    p.add_argument("--train", required=True, help="the source to train on (utk, asia, ...)")
    p.add_argument("--val", required=True, help="the source to validate on")
    p.add_argument("-o", "--output", required=True, help="the new split, NAME.split.json beside the model to train")
    args = p.parse_args(argv)

    from nets.training.cross_source import write_cross_source_split
    from nets.training.data import DataError

    try:
        split = write_cross_source_split(args.split, args.train, args.val, args.output)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {len(split['train'])} {args.train} faces to train on, {len(split['val'])} {args.val} "
          "faces to validate on", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
