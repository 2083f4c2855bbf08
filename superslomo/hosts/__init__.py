"""The hosts video people already work in: a VapourSynth filter (`vapoursynth.py`, imported as
`superslomo.vapoursynth`) and a GStreamer element (`gstreamer.py`, found through `slomo gst-env`).
Both run the video job's rules (video/timing.py, video/scenes.py, video/pipeline.py) on the
runtime's pair protocol, so their frames are the CLI's."""
