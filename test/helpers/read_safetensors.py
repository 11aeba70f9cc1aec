"""An independent safetensors reader (Python standard library only), used by
the tests to check that the files fisher-gpu writes follow the format. Prints
JSON: metadata and, per tensor, dtype, shape and the values."""
import json
import struct
import sys

FORMATS = {"F32": "f", "F64": "d", "I32": "i", "I64": "q"}

with open(sys.argv[1], "rb") as f:
    blob = f.read()
(n,) = struct.unpack("<Q", blob[:8])
header = json.loads(blob[8 : 8 + n])
data = blob[8 + n :]
out = {"metadata": header.pop("__metadata__", {}), "tensors": {}}
for name, info in header.items():
    begin, end = info["data_offsets"]
    code = FORMATS[info["dtype"]]
    count = (end - begin) // struct.calcsize(code)
    values = struct.unpack("<%d%s" % (count, code), data[begin:end])
    out["tensors"][name] = {"dtype": info["dtype"], "shape": info["shape"], "values": list(values)}
json.dump(out, sys.stdout)
