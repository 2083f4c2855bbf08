"""`python -m superslomo.apps.bench minterpolate CLIP OUT FRAMES FACTOR CRF PRESET`: the
minterpolate side of the race, run as its own process (see race.py)."""

import sys

from superslomo.apps.bench.race import main

main(sys.argv[1:])
