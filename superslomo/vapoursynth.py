"""`from superslomo.vapoursynth import slomo`: the VapourSynth filter (superslomo/hosts/vapoursynth.py)
under the name VapourSynth scripts import."""

from superslomo.hosts.vapoursynth import slomo

__all__ = ["slomo"]
