"""What every stage shares and none owns: graph I/O names and layouts, frame <-> graph conversion,
the manifest schema, shapes and profiles, files written atomically, the device's identity.

Everything here imports only numpy, the standard library and `superslomo.errors`, so any stage
(and an app on a Jetson that ships numpy and TensorRT alone) can import it.
"""
