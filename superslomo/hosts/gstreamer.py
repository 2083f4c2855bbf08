"""The `slomo` GStreamer element: `... ! videoconvert ! slomo factor=2 ! videoconvert ! ...`.

GStreamer's Python plugin loader imports it through gst_plugin/python/slomo_gst.py once
`eval "$(slomo gst-env)"` has put that folder on GST_PLUGIN_PATH. Inside, it is the video job
(video/pipeline.py) with buffers for frames: `pair_jobs` plans each pair (timing from the buffers'
timestamps, the CLI's scene cuts) and prepares it on a flow thread, a push thread synthesizes and
pushes, and the chain function only queues the frame, so upstream is not held for a pair's compute
and the two graphs overlap as in `slomo interpolate`. A segment is one run: a new segment, caps,
EOS or a flush ends it, so no pair spans a seek; EOS and new segments drain it (the last frame is
held for its interval), a flush drops it.
"""

from __future__ import annotations

import queue
import threading
from fractions import Fraction

import gi
import numpy as np

from superslomo.errors import SloMoError
from superslomo.hosts.pairs import note, open_interpolator
from superslomo.runtime.staging import Stopped, background, get_until_stopped, put_until_stopped
from superslomo.video.pipeline import MAX_FACTOR, Options, Summary, job_frames, pair_jobs, rates_for
from superslomo.video.scenes import DEFAULT_THRESHOLD, SceneDetector
from superslomo.video.timing import Timeline, parse_rate

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, GObject, Gst, GstVideo  # noqa: E402

# format -> bytes per pixel, where R, G and B sit in it
LAYOUTS = {
    "RGB": (3, (0, 1, 2)),
    "BGR": (3, (2, 1, 0)),
    "RGBA": (4, (0, 1, 2)),
    "RGBx": (4, (0, 1, 2)),
    "BGRA": (4, (2, 1, 0)),
    "BGRx": (4, (2, 1, 0)),
}
CAPS = Gst.Caps.from_string(
    f"video/x-raw, format=(string){{ {', '.join(LAYOUTS)} }}, width=(int)[1, 2147483647], "
    "height=(int)[1, 2147483647], framerate=(fraction)[0/1, 2147483647/1]"
)
_QUEUE_FRAMES = 6  # frames queued between the chain function and the flow thread, as in the CLI
_END = object()
_SECOND = 10**9
# GStreamer stamps buffers in whole nanoseconds; a stamp this close to the rate's grid is on it,
# so 30000/1001 input is timed exactly as `slomo interpolate` times it from its container.
_ON_GRID = Fraction(1, 10**6)


class _Layout:
    """Frames of one negotiated format and size <-> HxWx3 uint8 RGB."""

    def __init__(self, caps: Gst.Caps) -> None:
        info = GstVideo.VideoInfo.new_from_caps(caps)
        structure = caps.get_structure(0)
        self.format = structure.get_value("format")
        self.bpp, self.order = LAYOUTS[self.format]
        self.width, self.height = info.width, info.height
        self.stride = info.stride[0]

    def to_rgb(self, buffer: Gst.Buffer) -> np.ndarray:
        offset, stride = 0, self.stride
        meta = GstVideo.buffer_get_video_meta(buffer)
        if meta is not None:
            offset, stride = meta.offset[0], meta.stride[0]
        ok, mapped = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise SloMoError("cannot read an input buffer")
        try:
            data = np.frombuffer(mapped.data, np.uint8)
            pixels = np.ndarray(
                (self.height, self.width, self.bpp), np.uint8, data, offset, (stride, self.bpp, 1)
            )
            return np.ascontiguousarray(pixels[..., list(self.order)])
        finally:
            buffer.unmap(mapped)

    def from_rgb(self, frame: np.ndarray) -> Gst.Buffer:
        rows = np.zeros((self.height, self.stride), np.uint8)
        pixels = rows[:, : self.width * self.bpp].reshape(self.height, self.width, self.bpp)
        pixels[..., list(self.order)] = frame
        if self.bpp == 4:
            pixels[..., 3] = 255  # opaque alpha (or the padding byte)
        return Gst.Buffer.new_wrapped(rows.tobytes())


class _Run:
    """One segment's frames through the model: chain -> flow thread -> push thread -> src pad."""

    def __init__(self, element: SloMo, interp, layout: _Layout, in_rate, out_rate: Fraction, cuts: bool):
        self.element, self.interp, self.layout = element, interp, layout
        self.in_rate, self.out_rate = in_rate, out_rate
        self.detector = SceneDetector(DEFAULT_THRESHOLD if cuts else 1.0)
        self.frames: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
        self.stop = threading.Event()
        self.flow_return = Gst.FlowReturn.OK
        self.first_ns: int | None = None
        self.thread = threading.Thread(target=self._push_all, name="slomo-push", daemon=True)
        self.thread.start()

    # -- the streaming thread's side ---------------------------------------------------------
    def feed(self, buffer: Gst.Buffer) -> Gst.FlowReturn:
        if buffer.pts == Gst.CLOCK_TIME_NONE:
            raise SloMoError("input buffers carry no timestamps (pts); slomo times its output from them")
        if self.first_ns is None:
            self.first_ns = buffer.pts
        when = Fraction(buffer.pts - self.first_ns, _SECOND)
        if self.in_rate:
            on_grid = Fraction(round(when * self.in_rate)) / self.in_rate
            when = on_grid if abs(when - on_grid) < _ON_GRID else when
        frame = self.layout.to_rgb(buffer)
        try:
            put_until_stopped(self.frames, (frame, when, buffer), self.stop)
        except Stopped:
            pass
        return self.flow_return

    def finish(self) -> None:
        """Push what is left (the last frame for its interval) and return when it is pushed."""
        try:
            put_until_stopped(self.frames, _END, self.stop)
        except Stopped:
            pass
        self.thread.join()

    def abort(self) -> None:
        self.stop.set()

    def join(self) -> None:
        self.thread.join()

    # -- the flow and push threads ------------------------------------------------------------
    def _decoded(self):
        # Ends (rather than raising) when stopped, so the flow stage finishes and the push
        # thread, which waits on it, sees the end; it pushes nothing once stopped.
        while True:
            try:
                item = get_until_stopped(self.frames, self.stop)
            except Stopped:
                return
            if item is _END:
                return
            yield item

    def _release(self, job) -> None:  # once, whoever reaches it first
        pair, job.pair = job.pair, None
        if pair is not None:
            self.interp.release(pair)

    def _pts(self, index: int) -> int:
        return self.first_ns + round(Fraction(index * _SECOND) / self.out_rate)

    def _push_all(self) -> None:
        nominal = 1 / self.in_rate if self.in_rate else 1 / self.out_rate
        jobs = background(
            pair_jobs(self._decoded(), Timeline(self.out_rate), self.detector, self.interp.prepare, nominal),
            self.interp.queue_depth,
            "slomo-flow",
            discard=self._release,  # pairs queued when the element stops go back to the backend
        )
        summary = Summary(input=None, output=None, backend="")  # type: ignore[arg-type]
        first = True
        try:
            for job in jobs:
                if self.stop.is_set():
                    self._release(job)
                    continue
                made = []
                if job.times:
                    try:
                        made = self.interp.synthesize(job.pair, job.times)
                    finally:
                        self._release(job)
                for slot, frame in zip(job.slots, job_frames(job, made, summary), strict=True):
                    buffer = self._buffer(frame, slot.index, first)
                    first = False
                    result = self.element.srcpad.push(buffer)
                    if result != Gst.FlowReturn.OK:
                        self.flow_return = result
                        self.stop.set()
                        return
        except Stopped:
            pass
        except (SloMoError, Exception) as error:  # noqa: BLE001 - a bus message, never a traceback
            self.element.fail(
                str(error) if isinstance(error, SloMoError) else f"{type(error).__name__}: {error}"
            )
            self.flow_return = Gst.FlowReturn.ERROR
            self.stop.set()
        finally:
            jobs.close()  # type: ignore[attr-defined]

    def _buffer(self, frame, index: int, first: bool) -> Gst.Buffer:
        if isinstance(frame, Gst.Buffer):  # an original: its memory shared, never rewritten
            copy = Gst.BufferCopyFlags
            buffer = frame.copy_region(copy.FLAGS | copy.META | copy.MEMORY, 0, frame.get_size())
        else:
            buffer = self.layout.from_rgb(frame)
        buffer.pts = self._pts(index)
        buffer.dts = Gst.CLOCK_TIME_NONE
        buffer.duration = self._pts(index + 1) - buffer.pts
        buffer.offset = Gst.BUFFER_OFFSET_NONE
        if first:
            buffer.set_flags(Gst.BufferFlags.DISCONT)
        else:
            buffer.unset_flags(Gst.BufferFlags.DISCONT)
        return buffer


def _any_rate(caps: Gst.Caps) -> Gst.Caps:
    """The same caps at any frame rate: the element sets the output's."""
    if caps.is_any() or caps.is_empty():
        return caps
    result = Gst.Caps.new_empty()
    for index in range(caps.get_size()):
        structure = caps.get_structure(index).copy()
        structure.remove_field("framerate")
        result.append_structure(structure)
    return result


# Serialized events that end a run: what follows them is not paired with what came before.
_ENDS_RUN = {
    Gst.EventType.CAPS,
    Gst.EventType.SEGMENT,
    Gst.EventType.EOS,
    Gst.EventType.GAP,
    Gst.EventType.SEGMENT_DONE,
}
_FLAGS = GObject.ParamFlags.READWRITE


class SloMo(Gst.Element):
    __gtype_name__ = "GstSloMo"
    __gstmetadata__ = (
        "Super SloMo frame interpolation",
        "Filter/Effect/Video",
        "Raises a video's frame rate with frames from Super SloMo (superslomo-trt)",
        "superslomo-trt",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
    )
    __gproperties__ = {
        "factor": (
            int,
            "factor",
            "Output rate = factor x input rate (same duration)",
            2,
            MAX_FACTOR,
            2,
            _FLAGS,
        ),
        "fps": (str, "fps", "Output frame rate instead of factor, e.g. 60 or 60000/1001", None, _FLAGS),
        "model": (
            str,
            "model",
            "Exported model folder or checkpoint (default: the shipped model)",
            None,
            _FLAGS,
        ),
        "backend": (str, "backend", "auto, onnxruntime, openvino or tensorrt", "auto", _FLAGS),
        "precision": (str, "precision", "auto, fp32, bf16, int8 or fp16", "auto", _FLAGS),
        "scene-change": (bool, "scene-change", "Hold the nearer original across a scene cut", True, _FLAGS),
    }

    def __init__(self) -> None:
        super().__init__()
        self.settings = {"factor": 2, "fps": None, "model": None, "backend": "auto", "precision": "auto"}
        self.settings["scene-change"] = True
        self.sinkpad = Gst.Pad.new_from_template(self.get_pad_template("sink"), "sink")
        self.sinkpad.set_chain_function_full(self._chain)
        self.sinkpad.set_event_function_full(self._sink_event)
        self.sinkpad.set_query_function_full(self._sink_query)
        self.add_pad(self.sinkpad)
        self.srcpad = Gst.Pad.new_from_template(self.get_pad_template("src"), "src")
        self.srcpad.set_query_function_full(self._src_query)
        self.add_pad(self.srcpad)
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._interp = None
        self._opened: tuple | None = None  # what the open interpolator was opened for
        self._layout: _Layout | None = None
        self._rates: tuple[Fraction | None, Fraction] | None = None

    def do_get_property(self, spec):
        return self.settings[spec.name]

    def do_set_property(self, spec, value):
        self.settings[spec.name] = value

    def fail(self, text: str, domain=Gst.StreamError, code=Gst.StreamError.FAILED) -> None:
        """A one-line error on the bus (gst-launch prints it and stops the pipeline)."""
        error = GLib.Error.new_literal(domain.quark(), f"slomo: {text}", int(code))
        self.post_message(Gst.Message.new_error(self, error, text))

    # -- negotiation -------------------------------------------------------------------------------
    def _answer_caps(self, query: Gst.Query, pad: Gst.Pad, other: Gst.Pad) -> bool:
        caps = pad.get_pad_template_caps().intersect(_any_rate(other.peer_query_caps(None)))
        wanted = query.parse_caps()
        if wanted is not None:
            caps = wanted.intersect_full(caps, Gst.CapsIntersectMode.FIRST)
        query.set_caps_result(caps)
        return True

    def _output_rate(self, in_rate: Fraction | None) -> Fraction:
        if self.settings["fps"]:
            return parse_rate(self.settings["fps"])
        if in_rate is None:
            raise SloMoError("the input has no fixed frame rate (framerate 0/1): set fps=RATE for the output")
        return rates_for(in_rate, Options(factor=self.settings["factor"]))[0]

    def _set_caps(self, caps: Gst.Caps) -> bool:
        try:
            layout = _Layout(caps)
            ok, num, den = caps.get_structure(0).get_fraction("framerate")
            in_rate = Fraction(num, den) if ok and num > 0 else None
            out_rate = self._output_rate(in_rate)
        except SloMoError as error:
            self.fail(str(error), Gst.CoreError, Gst.CoreError.NEGOTIATION)
            return False
        wanted = (self.settings["model"], self.settings["backend"], self.settings["precision"])
        wanted += ((layout.width, layout.height),)
        if self._opened != wanted:
            self._close_model()
            try:
                self._interp, _ = open_interpolator(*wanted, say=note)
                self._interp.activate()
            except SloMoError as error:
                self.fail(str(error), Gst.ResourceError, Gst.ResourceError.NOT_FOUND)
                return False
            except Exception as error:  # noqa: BLE001 - a bus message, never a traceback
                self.fail(f"cannot open the model: {type(error).__name__}: {error}", Gst.ResourceError)
                return False
            self._opened = wanted
        self._layout, self._rates = layout, (in_rate, out_rate)
        out_caps = caps.copy()
        out_caps.set_value("framerate", Gst.Fraction(out_rate.numerator, out_rate.denominator))
        return self.srcpad.push_event(Gst.Event.new_caps(out_caps))

    def _close_model(self) -> None:
        if self._interp is not None:
            self._interp.close()
        self._interp, self._opened = None, None

    # -- data flow -------------------------------------------------------------------------------
    def _chain(self, pad: Gst.Pad, parent, buffer: Gst.Buffer) -> Gst.FlowReturn:
        try:
            with self._lock:
                if self._run is None:
                    if self._layout is None:
                        return Gst.FlowReturn.NOT_NEGOTIATED
                    in_rate, out_rate = self._rates
                    cuts = self.settings["scene-change"]
                    self._run = _Run(self, self._interp, self._layout, in_rate, out_rate, cuts)
                run = self._run
            return run.feed(buffer)
        except SloMoError as error:
            self.fail(str(error))
            return Gst.FlowReturn.ERROR

    def _end_run(self) -> None:
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            run.finish()

    def _sink_event(self, pad: Gst.Pad, parent, event: Gst.Event) -> bool:
        kind = event.type
        if kind == Gst.EventType.FLUSH_START:
            with self._lock:
                run = self._run
            if run is not None:
                run.abort()
            result = self.srcpad.push_event(event)  # downstream flushes, so a blocked push returns
            if run is not None:
                run.join()
            return result
        if kind == Gst.EventType.FLUSH_STOP:
            with self._lock:
                run, self._run = self._run, None
            if run is not None:
                run.abort()
                run.join()
            return self.srcpad.push_event(event)
        if kind in _ENDS_RUN:
            self._end_run()
        if kind == Gst.EventType.CAPS:
            return self._set_caps(event.parse_caps())
        return pad.event_default(parent, event)

    def _sink_query(self, pad: Gst.Pad, parent, query: Gst.Query) -> bool:
        if query.type == Gst.QueryType.CAPS:
            return self._answer_caps(query, pad, self.srcpad)
        if query.type == Gst.QueryType.ALLOCATION:
            return False  # upstream allocates plain buffers; outputs are made here
        return pad.query_default(parent, query)

    def _src_query(self, pad: Gst.Pad, parent, query: Gst.Query) -> bool:
        if query.type == Gst.QueryType.CAPS:
            return self._answer_caps(query, pad, self.sinkpad)
        if query.type == Gst.QueryType.LATENCY:
            if not self.sinkpad.peer_query(query):
                return False
            live, least, most = query.parse_latency()
            # A new frame needs the next original: one input interval more (the queues add compute).
            rate = self._rates[0] if self._rates and self._rates[0] else Fraction(25)
            extra = round(_SECOND / rate)
            query.set_latency(live, least + extra, most + extra if most != Gst.CLOCK_TIME_NONE else most)
            return True
        return pad.query_default(parent, query)

    def do_change_state(self, transition: Gst.StateChange) -> Gst.StateChangeReturn:
        if transition == Gst.StateChange.PAUSED_TO_READY:
            with self._lock:
                run, self._run = self._run, None
            if run is not None:
                run.abort()
        result = Gst.Element.do_change_state(self, transition)
        if transition == Gst.StateChange.PAUSED_TO_READY:
            if run is not None:
                run.join()
            self._layout = None
        elif transition == Gst.StateChange.READY_TO_NULL:
            self._close_model()
        return result


GObject.type_register(SloMo)
