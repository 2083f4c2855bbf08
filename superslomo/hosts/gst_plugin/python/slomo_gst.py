"""What GStreamer's Python plugin loader imports from GST_PLUGIN_PATH/python: the `slomo` element.

The loader runs the system's Python; SLOMO_GST_PYTHONPATH (printed by `slomo gst-env`) names the
installation and its site-packages (numpy, onnxruntime), put first so they win over the system's.
"""

import os
import sys

from gi.repository import Gst

for _entry in reversed(os.environ.get("SLOMO_GST_PYTHONPATH", "").split(os.pathsep)):
    if _entry and _entry not in sys.path:
        sys.path.insert(0, _entry)

try:
    from superslomo.hosts.gstreamer import SloMo
except ImportError as _error:  # one line, not a traceback: the element is simply absent
    sys.stderr.write(f'slomo element unavailable: {_error} (eval "$(slomo gst-env)" sets its Python path)\n')
else:
    __gstelementfactory__ = ("slomo", Gst.Rank.NONE, SloMo)
