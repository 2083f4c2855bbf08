"""Drives the `slomo` GStreamer element for tests/test_hosts.py, under the system Python that
GStreamer's plugin loader runs: pads of its own play upstream (buffers, a flushing seek, EOS) and
downstream (records every buffer and event in order).

usage: python3 hosts_gst_check.py IN.npz OUT.npz SPEC, SPEC a JSON object such as
  {"properties": {...}, "format": "RGB", "rate": [25, 1],
   "steps": [["push", 0, 5], ["seek", 8], ["push", 8, 12], ["eos"]]}
IN.npz holds `frames` (N,H,W,3 uint8 RGB); OUT.npz gets every output buffer's RGB, pts, duration
and flags, the output caps, and the time each push took.
"""

import json
import os
import sys
import time

for entry in reversed(os.environ.get("SLOMO_GST_PYTHONPATH", "").split(os.pathsep)):
    if entry and entry not in sys.path:
        sys.path.insert(0, entry)

import gi  # noqa: E402
import numpy as np  # noqa: E402

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

LAYOUTS = {"RGB": (3, [0, 1, 2]), "BGRx": (4, [2, 1, 0]), "RGBA": (4, [0, 1, 2])}


def main() -> None:
    source, target, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    Gst.init(None)
    frames = np.load(source)["frames"]
    count, height, width, _ = frames.shape
    fmt = spec.get("format", "RGB")
    num, den = spec.get("rate", [25, 1])
    # Registered here rather than through the plugin loader: that loader embeds its own Python
    # and does not share a process with one (gst-launch tests cover the loader's path).
    from superslomo.hosts.gstreamer import SloMo

    Gst.Element.register(None, "slomo-under-test", Gst.Rank.NONE, SloMo)
    element = Gst.ElementFactory.make("slomo-under-test", None)
    for key, value in spec["properties"].items():
        element.set_property(key, value)
    caps = f"video/x-raw,format={fmt},width={width},height={height},framerate={num}/{den}"
    received: list = []  # buffers and event types in the order they left the element

    def chain(pad, parent, made):
        received.append(made)
        return Gst.FlowReturn.OK

    def event(pad, parent, sent):
        received.append(sent)
        return True

    upstream = Gst.Pad.new("src", Gst.PadDirection.SRC)
    downstream = Gst.Pad.new("sink", Gst.PadDirection.SINK)
    downstream.set_chain_function_full(chain)
    downstream.set_event_function_full(event)
    upstream.link(element.get_static_pad("sink"))
    element.get_static_pad("src").link(downstream)
    upstream.set_active(True)
    downstream.set_active(True)
    element.set_state(Gst.State.PLAYING)
    upstream.push_event(Gst.Event.new_stream_start("slomo-test"))
    upstream.push_event(Gst.Event.new_caps(Gst.Caps.from_string(caps)))
    segment = Gst.Segment()
    segment.init(Gst.Format.TIME)
    upstream.push_event(Gst.Event.new_segment(segment))
    info = GstVideo.VideoInfo.new_from_caps(Gst.Caps.from_string(caps))
    bpp, order = LAYOUTS[fmt]

    def buffer(index: int) -> Gst.Buffer:
        rows = np.zeros((height, info.stride[0]), np.uint8)
        pixels = rows[:, : width * bpp].reshape(height, width, bpp)
        pixels[..., order] = frames[index]
        made = Gst.Buffer.new_wrapped(rows.tobytes())
        made.pts = Gst.util_uint64_scale(index, Gst.SECOND * den, num)
        made.duration = Gst.util_uint64_scale(index + 1, Gst.SECOND * den, num) - made.pts
        return made

    out_caps = ""
    eos_seconds = 0.0
    push_seconds, flows = [], []
    for step in spec["steps"]:
        if step[0] == "push":
            for index in range(step[1], step[2]):
                began = time.perf_counter()
                flows.append(int(upstream.push(buffer(index))))
                push_seconds.append(time.perf_counter() - began)
        elif step[0] == "seek":  # what a flushing seek sends down to the element
            upstream.push_event(Gst.Event.new_flush_start())
            upstream.push_event(Gst.Event.new_flush_stop(True))
            segment = Gst.Segment()
            segment.init(Gst.Format.TIME)
            segment.start = segment.time = Gst.util_uint64_scale(step[1], Gst.SECOND * den, num)
            upstream.push_event(Gst.Event.new_segment(segment))
        elif step[0] == "eos":
            began = time.perf_counter()
            upstream.push_event(Gst.Event.new_eos())
            eos_seconds = time.perf_counter() - began
    # The element forwards EOS only once its last buffer is pushed, so everything is here now.
    element.set_state(Gst.State.NULL)
    out, pts, durations, flags, events = [], [], [], [], []
    for item in received:
        if isinstance(item, Gst.Event):
            events.append(item.type.value_nick)
            if item.type == Gst.EventType.CAPS:
                out_caps = item.parse_caps().to_string()
            continue
        events.append("buffer")
        ok, mapped = item.map(Gst.MapFlags.READ)
        data = np.frombuffer(mapped.data, np.uint8)
        pixels = np.ndarray((height, width, bpp), np.uint8, data, 0, (info.stride[0], bpp, 1))
        out.append(np.ascontiguousarray(pixels[..., order]))
        item.unmap(mapped)
        pts.append(item.pts)
        durations.append(item.duration)
        flags.append(int(item.get_flags()))
    np.savez(
        target,
        frames=np.stack(out) if out else np.zeros((0, height, width, 3), np.uint8),
        pts=np.array(pts, np.int64),
        durations=np.array(durations, np.int64),
        flags=np.array(flags, np.int64),
        push_seconds=np.array(push_seconds),
        flows=np.array(flows),
        caps=np.array(out_caps),
        events=np.array(events),
        eos_seconds=np.array(eos_seconds),
    )


if __name__ == "__main__":
    main()
