"""Assemble a folder that runs as a Hugging Face Space: `make space` or `python spaces/build.py`.

This folder is run by path and has no __init__.py on purpose: a package named `spaces` here would
shadow Hugging Face's `spaces` package (ZeroGPU's @spaces.GPU) wherever the repository is on sys.path.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "build" / "space"
SOURCES = ("app.py", "engine", "ui", "assets")  # what the Space runs; never spaces/ (see above)
SYSTEM_PACKAGES = ("tesseract-ocr", "ffmpeg")  # Document tab OCR; audio formats soundfile cannot read
MARKER = ".pipeline-studio-space"  # only a folder carrying it is ever emptied
SHORT_DESCRIPTION = "Transformers pipelines as a web app: speech, vision, docs"
DEFAULT_HARDWARE = "t4-small"
LICENSE = "apache-2.0"  # the Hub's id for LICENSE's text
# Not the builder's Python: transformers 5.24 needs 3.11+ (so ZeroGPU's documented 3.10.13 cannot run it),
# and 3.11 is what the suite runs on. spaces 0.51 supports 3.10-3.14.
PYTHON_VERSION = "3.11"
ZEROGPU = "zero-a10g"  # the flavour's id for create_repo/request_space_hardware; not a suggested_hardware value
CPU_HARDWARE = ("cpu-basic", "cpu-upgrade")
# PyPI's torch for Linux is the CUDA build (it runs on CPU too, but brings several GB of CUDA libraries);
# CPU hardware gets PyTorch's CPU-only wheel from its own index instead.
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")


def pinned_version(package: str, requirements: Path = ROOT / "requirements.txt") -> str | None:
    """The exact version requirements.txt pins for a package, if any."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(rf"^\s*{re.escape(package)}\s*==\s*([^\s;#]+)", line, re.IGNORECASE)
        if match:
            return match.group(1)
    return None


def gradio_version() -> str:
    """The gradio the Space runs: requirements.txt's pin, else the installed one."""
    pinned = pinned_version("gradio")
    try:
        import gradio

        installed = gradio.__version__
    except ImportError:
        installed = None
    if pinned and installed and pinned != installed:
        print(f"warning: requirements.txt pins gradio=={pinned} but {installed} is installed; the Space "
              f"will run {pinned}", file=sys.stderr)
    version = pinned or installed
    if not version:
        raise SystemExit("error: gradio is neither pinned in requirements.txt nor installed")
    return version


def default_models() -> list[str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from engine.registry import TASKS

    return list(dict.fromkeys(spec.default_model for spec in TASKS.values()))


def hardware_names() -> list[str]:
    """The hardware flavours huggingface_hub knows (what create_repo and request_space_hardware take)."""
    from huggingface_hub import SpaceHardware

    return [h.value for h in SpaceHardware]


def check_hardware(hardware: str) -> str:
    if hardware not in hardware_names():
        raise SystemExit(f"error: unknown hardware {hardware!r}; one of: {', '.join(hardware_names())}")
    return hardware


def front_matter(hardware: str = DEFAULT_HARDWARE) -> dict:
    """The Space's configuration (https://huggingface.co/docs/hub/spaces-config-reference).

    ZeroGPU is not a suggested_hardware value (only paid flavours are), so a ZeroGPU bundle leaves it out;
    preload_from_hub puts the default models in the image at build time, not on the first visitor's request.
    """
    check_hardware(hardware)
    meta = {
        "title": "pipeline-studio",
        "emoji": "🧰",
        "colorFrom": "indigo",
        "colorTo": "blue",
        "sdk": "gradio",
        "sdk_version": gradio_version(),
        "app_file": "app.py",
        "python_version": PYTHON_VERSION,
        "license": LICENSE,
        "suggested_hardware": hardware,
        "models": default_models(),
        "preload_from_hub": default_models(),
        "short_description": SHORT_DESCRIPTION,
        "tags": ["transformers", "gradio", "speech-recognition", "image-classification",
                 "document-question-answering", "mcp-server"],
        "pinned": False,
    }
    if hardware.startswith("zero-") or hardware == "cpu-basic":  # ZeroGPU is not a value there; cpu-basic is the default
        del meta["suggested_hardware"]
    return meta


def space_requirements(hardware: str) -> str:
    """requirements.txt for the Space: the repository's pins, with a CPU-only torch on CPU hardware."""
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    if hardware not in CPU_HARDWARE:
        return text
    torch = pinned_version("torch")
    lines = [f"torch=={torch}+cpu  # CPU-only wheel ({hardware}); PyPI's Linux torch is the CUDA build"
             if re.match(r"^\s*torch\s*==", line) else line for line in text.splitlines()]
    return f"--extra-index-url {CPU_TORCH_INDEX}\n" + "\n".join(lines) + "\n"


def render_readme(meta: dict, space_id: str) -> str:
    import yaml

    text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False).strip()
    template = Template((Path(__file__).with_name("README.template.md")).read_text(encoding="utf-8"))
    return template.substitute(front_matter=text, space_id=space_id)


def _prepare(out: Path) -> None:
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
            raise SystemExit(f"error: {out} exists and is not a bundle made by this script; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by spaces/build.py; emptied on every build\n", encoding="utf-8")


def build_bundle(out: Path | str = DEFAULT_OUT, hardware: str = DEFAULT_HARDWARE,
                 space_id: str = "USER/NAME") -> Path:
    """Write README.md (front matter), requirements.txt, packages.txt and the sources into out."""
    out = Path(out).resolve()
    readme = render_readme(front_matter(hardware), space_id)
    _prepare(out)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, out / name)
    (out / "README.md").write_text(readme, encoding="utf-8")
    (out / "requirements.txt").write_text(space_requirements(hardware), encoding="utf-8")
    shutil.copy2(ROOT / "LICENSE", out / "LICENSE")
    (out / "packages.txt").write_text("\n".join(SYSTEM_PACKAGES) + "\n", encoding="utf-8")
    return out


def bundle_files(out: Path) -> list[Path]:
    """The files an upload sends (relative paths), in a stable order."""
    return sorted(p.relative_to(out) for p in Path(out).rglob("*") if p.is_file() and p.name != MARKER)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="spaces/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"bundle folder (default {DEFAULT_OUT})")
    parser.add_argument("--hardware", default=DEFAULT_HARDWARE,
                        help="what the bundle is for: suggested_hardware in the front matter (left out for zero-a10g, "
                             "ZeroGPU), and a CPU-only torch for cpu-basic/cpu-upgrade")
    args = parser.parse_args(argv)
    out = build_bundle(args.out, args.hardware)
    files = bundle_files(out)
    size = sum((out / f).stat().st_size for f in files)
    print(f"Space bundle: {out} ({len(files)} files, {size / 2**20:.1f} MiB)")
    print("Try it locally:  cd build/space && python app.py" if out == DEFAULT_OUT else f"Try it: cd {out} && python app.py")
    print("Deploy it:       python spaces/deploy.py --repo USER/NAME")
    return out


if __name__ == "__main__":
    main()
