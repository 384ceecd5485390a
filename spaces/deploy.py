"""Create or update a Hugging Face Space from the bundle: python spaces/deploy.py --repo USER/NAME."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load_build() -> ModuleType:
    """spaces/build.py by path: this folder is deliberately not a package (see build.py)."""
    spec = importlib.util.spec_from_file_location("pipeline_studio_space_build", HERE / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hardware_choices() -> list[str]:
    from huggingface_hub import SpaceHardware

    return [h.value for h in SpaceHardware]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spaces/deploy.py", description=__doc__)
    parser.add_argument("--repo", required=True, metavar="USER/NAME", help="the Space's id")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--hardware", choices=hardware_choices(), metavar="FLAVOR",
                        help="hardware to run on, e.g. cpu-basic, cpu-upgrade, t4-small, zero-a10g (ZeroGPU): "
                             "requested for a new or an existing Space, and what the bundle is built for")
    parser.add_argument("--out", type=Path, help="bundle folder (default build/space)")
    parser.add_argument("--dry-run", action="store_true", help="build and list what would be uploaded; call nothing")
    return parser


def main(argv: list[str] | None = None) -> str | None:
    args = build_parser().parse_args(argv)
    if args.repo.count("/") != 1 or not all(args.repo.split("/")):
        raise SystemExit(f"error: --repo must look like USER/NAME, not {args.repo!r}")
    build = load_build()
    out = build.build_bundle(args.out or build.DEFAULT_OUT, args.hardware or build.DEFAULT_HARDWARE, args.repo)
    files = build.bundle_files(out)
    if args.dry_run:
        size = sum((out / f).stat().st_size for f in files)
        print(f"Dry run: would create or update the Space {args.repo} (sdk gradio, "
              f"{'private' if args.private else 'public'}, hardware {args.hardware or 'unchanged/default'}) "
              f"and upload {len(files)} files ({size / 2**20:.1f} MiB) from {out}:")
        for f in files:
            print(f"  {f.as_posix()}  ({(out / f).stat().st_size:,} bytes)")
        return None

    from huggingface_hub import HfApi, constants, get_token

    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise SystemExit("error: no Hugging Face token; set HF_TOKEN or log in with `hf auth login` "
                         "(a token with write access: https://huggingface.co/settings/tokens)")
    api = HfApi(token=token)
    extra = {"space_hardware": args.hardware} if args.hardware else {}
    api.create_repo(args.repo, repo_type="space", space_sdk="gradio", private=args.private, exist_ok=True, **extra)
    # delete_patterns="*": files that left the bundle leave the Space too (the upload's own files stay,
    # and huggingface_hub never deletes .gitattributes).
    api.upload_folder(folder_path=str(out), repo_id=args.repo, repo_type="space",
                      ignore_patterns=[build.MARKER], delete_patterns=["*"],
                      commit_message="Deploy pipeline-studio (spaces/deploy.py)")
    if args.hardware:  # create_repo only applies it to a new Space
        runtime = api.request_space_hardware(args.repo, args.hardware)
        print(f"Hardware requested: {args.hardware} (now {getattr(runtime, 'hardware', None) or 'starting'}; "
              "paid hardware is billed to the Space's owner)", file=sys.stderr)
    url = f"{constants.ENDPOINT}/spaces/{args.repo}"
    print(f"Space: {url}")
    return url


if __name__ == "__main__":
    main()
