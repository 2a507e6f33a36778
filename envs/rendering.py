"""Can this machine render ManiSkill frames, and how to make rendering cheaper.

Frames are the input of every VLM reward, so an actor that cannot render is useless to the
reward path. :func:`check_rendering` tells, with a message that says what is missing, whether
SAPIEN can open a Vulkan device here (an NVIDIA GPU, or Mesa's lavapipe CPU driver installed by
``envs/setup_rendering.sh`` / ``make render-deps``). :func:`configure_render_env` sets the
environment variables that cut lavapipe's fixed costs (on-disk shader cache, thread count);
call it before SAPIEN creates its renderer (the env factory does).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
MIN_MESA_MAJOR = 24
"""SAPIEN 3 needs a recent lavapipe: Debian 12's own Mesa 22 fails; bookworm-backports' Mesa 25 works."""
SETUP_HINT = "run `make render-deps` (envs/setup_rendering.sh) as root, or install Mesa >= 24 lavapipe + libvulkan1"
DEFAULT_SHADER_CACHE = Path.home() / ".cache" / "vlmrl" / "mesa_shader_cache"


class RenderingUnavailable(RuntimeError):
    """SAPIEN cannot render on this machine; the message says what is missing."""


@dataclass
class RenderingStatus:
    ok: bool
    reason: str
    """Why rendering is impossible (empty when ok)."""
    icds: List[str] = field(default_factory=list)
    """Vulkan driver manifests found (lavapipe is ``lvp_icd*.json``, NVIDIA ``nvidia_icd.json``)."""
    mesa_version: str = ""


def _icd_files() -> List[str]:
    env = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return sorted(f for d in ICD_DIRS for f in glob.glob(os.path.join(d, "*.json")))


def _mesa_version() -> str:
    """Installed mesa-vulkan-drivers version (Debian/Ubuntu), '' when unknown."""
    if shutil.which("dpkg-query") is None:
        return ""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "mesa-vulkan-drivers"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def _mesa_major(version: str) -> int:
    v = version.split(":", 1)[-1]
    try:
        return int(v.split(".", 1)[0])
    except ValueError:
        return -1


def _probe_device(timeout_s: float) -> str:
    """Open a SAPIEN render system in a child process (a broken driver may crash or hang); '' when it works."""
    code = "import sapien; sapien.render.RenderSystem()"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"opening a SAPIEN render device hung for more than {timeout_s:.0f} s"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["exit code %d" % out.returncode])[-1]
        return f"SAPIEN could not open a render device: {last}"
    return ""


@functools.lru_cache(maxsize=1)
def rendering_status(probe_timeout_s: float = 60.0) -> RenderingStatus:
    """Diagnose rendering once per process (cached): Vulkan driver manifests, Mesa version, a real device probe."""
    icds = _icd_files()
    mesa = _mesa_version()
    if not icds:
        return RenderingStatus(False, f"no Vulkan ICD (driver manifest) found in {', '.join(ICD_DIRS)}: {SETUP_HINT}",
                               icds, mesa)
    names = [os.path.basename(p) for p in icds]
    has_nvidia = any("nvidia" in n for n in names)
    has_lvp = any(n.startswith("lvp_icd") for n in names)
    if not has_nvidia and not has_lvp:
        return RenderingStatus(False, f"no usable Vulkan driver: found only {names} (need lavapipe lvp_icd.json "
                               f"on a CPU machine or nvidia_icd.json with an NVIDIA GPU): {SETUP_HINT}", icds, mesa)
    if has_lvp and not has_nvidia and mesa and _mesa_major(mesa) < MIN_MESA_MAJOR:
        return RenderingStatus(False, f"Mesa lavapipe {mesa} is too old for SAPIEN 3 (need Mesa >= {MIN_MESA_MAJOR}): "
                               f"{SETUP_HINT}", icds, mesa)
    err = _probe_device(probe_timeout_s)
    if err:
        return RenderingStatus(False, f"{err} (Vulkan drivers: {names}, Mesa {mesa or 'unknown'}): {SETUP_HINT}",
                               icds, mesa)
    return RenderingStatus(True, "", icds, mesa)


def check_rendering() -> RenderingStatus:
    """Raise :class:`RenderingUnavailable` saying what is missing when SAPIEN cannot render here."""
    status = rendering_status()
    if not status.ok:
        raise RenderingUnavailable(status.reason)
    return status


def configure_render_env(shader_cache_dir: str | os.PathLike | None = None, lp_num_threads: int | None = None,
                         shader_cache_max_size: str = "1G") -> None:
    """Set Mesa's knobs for CPU rendering before SAPIEN starts its renderer (values already set win).

    - ``MESA_SHADER_CACHE_DIR``: lavapipe compiles SAPIEN's shaders with LLVM at start-up; an
      on-disk cache shared by all actor processes makes later start-ups cheaper.
    - ``LP_NUM_THREADS``: lavapipe's rasteriser threads (default: all cores); on a machine shared by
      many actor processes fewer threads avoid oversubscription.
    """
    cache = Path(shader_cache_dir) if shader_cache_dir else DEFAULT_SHADER_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MESA_SHADER_CACHE_DIR", str(cache))
    os.environ.setdefault("MESA_SHADER_CACHE_MAX_SIZE", shader_cache_max_size)
    os.environ.setdefault("MESA_SHADER_CACHE_DISABLE", "false")
    if lp_num_threads is not None:
        os.environ.setdefault("LP_NUM_THREADS", str(int(lp_num_threads)))


def describe() -> str:
    """One-line summary for logs."""
    s = rendering_status()
    return json.dumps({"ok": s.ok, "reason": s.reason, "icds": [os.path.basename(i) for i in s.icds],
                       "mesa": s.mesa_version})
