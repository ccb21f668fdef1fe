"""ggufcopy.py - copies of a GGUF file with changes, for the shell tests that
need malformed or rearranged models (test_model_refuse.sh, test_split.sh).
Needs the PyPI gguf package."""
from gguf import GGMLQuantizationType, GGUFValueType


def copy_kv(reader, writer, arch="llama", patch=None, drop=()):
	"""Every key of READER but the header's, general.architecture and
	those in DROP into WRITER; "llama." keys become ARCH's; PATCH
	{key: int} replaces values (as uint32)."""
	for k, f in reader.fields.items():
		if k.startswith("GGUF.") or k == "general.architecture" or k in drop:
			continue
		nk = k.replace("llama.", arch + ".", 1) if k.startswith("llama.") else k
		if patch and nk in patch:
			writer.add_uint32(nk, patch[nk])
			continue
		t = f.types[0]
		v = f.contents()
		if t == GGUFValueType.ARRAY:
			writer.add_array(nk, v)
		elif t == GGUFValueType.STRING:
			writer.add_string(nk, v)
		else:
			writer.add_key_value(nk, v, t)


def copy_tensors(reader, writer, keep=lambda name: True):
	"""The tensors of READER whose names KEEP accepts, data unchanged."""
	for t in reader.tensors:
		if not keep(t.name):
			continue
		if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
			shape = list(reversed([int(x) for x in t.shape]))
			writer.add_tensor(t.name, t.data.reshape(shape), raw_dtype=t.tensor_type)
		else:
			writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)


def finish(writer):
	writer.write_header_to_file()
	writer.write_kv_data_to_file()
	writer.write_tensors_to_file()
	writer.close()
