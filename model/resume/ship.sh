#!/usr/bin/env bash
# After the long run: the age model, the mirror forms, -test, -fz, cards (all into runs/i13/ship).
set -euo pipefail
cd /work/main
S=runs/i13/ship; mkdir -p $S runs/i13/age
D="--dataset dataset/data --source utk|asia"
cp runs/i13/base.split.json runs/i13/age/m.split.json
python nets/C3AE.py $D -se -white -b 128 -lr 0.0005 --cosine-lr --epochs 4 --robust -p runs/i13/long/m.keras -s runs/i13/age/m.keras
cp runs/i13/base.split.json $S/c3ae_utk_asia_age_gender.split.json
python nets/C3AE_expand.py $D -se -white -b 128 --mirror --epochs 0 -p runs/i13/long/m.keras -s $S/c3ae_utk_asia_age_gender.keras
cp runs/i13/base.split.json $S/c3ae_utk_asia_age.split.json
python nets/C3AE.py $D -se -white -b 128 --mirror --epochs 0 -p runs/i13/age/m.keras -s $S/c3ae_utk_asia_age.keras
for m in age_gender age; do
  script=nets/C3AE_expand.py; [ $m = age ] && script=nets/C3AE.py
  python $script -test -fz -p $S/c3ae_utk_asia_$m.keras $D > $S/$m.test.json 2> $S/$m.test.log
  python nets/model_card.py $S/c3ae_utk_asia_$m.keras --dataset dataset/data --source 'utk|asia' > /dev/null
done
echo shipped-ready
python nets/C3AE_expand.py -test -p runs/i13/long/m.keras $D > runs/i13/long.test.json 2> runs/i13/long.test.log
python nets/C3AE.py -test -p runs/i13/age/m.keras $D > runs/i13/age.test.json 2> runs/i13/age.test.log
echo singles-done
