"""The identity of the machine a run is measured on, and a stable id of it, as asv and pyperf keep one.

Timings are compared only between runs of one machine: history, regressions, `compare`
and calibration group runs by `machine_id`. The id hashes what makes the hardware and its
operating system what they are — the host's name and its operating-system installation id
(`/etc/machine-id`, which tells two otherwise identical virtual machines apart), the CPU
model, the core count, the memory, the accelerator's model, count and driver, and the OS —
and leaves out the kernel release and the JAX and jaxlib versions, which are recorded
beside it: an upgrade that slows a program down is a regression of that machine to flag,
not another machine.

Sources: py-cpuinfo for the CPU model, the `platform` module for the OS, `os.sysconf` for
the memory, JAX's devices for the accelerator and its platform version, `nvidia-smi` for
an NVIDIA driver. Runs stored before machine ids existed have none: `UNKNOWN`, a machine
of their own that no new run is compared with.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

import jax

from harness.model.profiles import host_cpu

UNKNOWN = "unknown"  # the machine id of runs stored without one
_ID_FIELDS = ("hostname", "os_install_id", "cpu_model", "cpu_cores", "accelerator", "accelerator_count",
              "accelerator_driver", "os")
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


@dataclasses.dataclass(frozen=True)
class Machine:
    """What a run was measured on. `machine_id` is a 12-hex hash of the identity fields (see the module
    docstring); `jax_version` and `jaxlib_version` are recorded but not part of it."""

    hostname: str
    os_install_id: str  # a hash of /etc/machine-id ("" where there is none)
    cpu_model: str
    cpu_cores: int  # logical cores
    memory_bytes: int
    accelerator: str  # the device kind of JAX's first device, "" on a CPU-only machine
    accelerator_count: int
    accelerator_driver: str  # NVIDIA's driver version, else JAX's platform version; "" on a CPU
    os: str  # the distribution, system and architecture
    kernel: str
    jax_version: str
    jaxlib_version: str

    @property
    def machine_id(self) -> str:
        """The stable id of the machine: the same on every run of this machine, another on any other. Memory
        counts in whole GiB (a kernel may reserve a little more or less from boot to boot); the kernel release
        and the JAX versions are left out."""
        identity = {k: getattr(self, k) for k in _ID_FIELDS} | {"memory_gib": round(self.memory_bytes / 2 ** 30)}
        identity = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:12]

    @property
    def description(self) -> str:
        """One line for people, e.g. "Intel Xeon, 2 cores, 23.5 GiB, no accelerator (vm, Debian 12)"."""
        accelerator = f"{self.accelerator_count} x {self.accelerator}" if self.accelerator else "no accelerator"
        return (f"{self.cpu_model}, {self.cpu_cores} cores, {self.memory_bytes / 2 ** 30:.1f} GiB, {accelerator} "
                f"({self.hostname}, {self.os})")

    def row(self) -> dict:
        """The columns every stored row of a run carries: machine_id, machine (the description) and the fields."""
        return {"machine_id": self.machine_id, "machine": self.description, **dataclasses.asdict(self)}


def _os_install_id() -> str:
    for path in _MACHINE_ID_FILES:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return hashlib.sha256(text.encode()).hexdigest()[:16]
    return ""


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        release = ""
    return ", ".join(p for p in (release, platform.system(), platform.machine()) if p)


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # no sysconf figures (not a POSIX system)
        return 0


def _nvidia_driver() -> str:
    """The NVIDIA driver version nvidia-smi reports, "" where there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ""
    versions = sorted(set(done.stdout.split())) if done.returncode == 0 else []
    return ",".join(versions)


def _accelerator() -> tuple[str, int, str]:
    """(device kind, device count, driver) of JAX's default backend; ("", 0, "") when it is the CPU."""
    try:
        devices = jax.devices()
    except RuntimeError:
        return "", 0, ""
    if not devices or devices[0].platform == "cpu":
        return "", 0, ""
    driver = _nvidia_driver() if devices[0].platform == "gpu" else ""
    if not driver:
        driver = str(getattr(devices[0].client, "platform_version", "")).splitlines()[0:1]
        driver = driver[0].strip() if driver else ""
    return str(devices[0].device_kind), len(devices), driver


def _jaxlib_version() -> str:
    import jaxlib

    return str(getattr(jaxlib, "__version__", ""))


@functools.lru_cache(maxsize=1)
def this_machine() -> Machine:
    """The machine this process runs on (read once per process)."""
    accelerator, count, driver = _accelerator()
    return Machine(hostname=socket.gethostname(), os_install_id=_os_install_id(), cpu_model=host_cpu()[0],
                   cpu_cores=os.cpu_count() or 0, memory_bytes=_memory_bytes(), accelerator=accelerator,
                   accelerator_count=count, accelerator_driver=driver, os=_os_name(),
                   kernel=platform.release(), jax_version=str(jax.__version__), jaxlib_version=_jaxlib_version())


def machine_of(manifest: dict) -> str:
    """The machine id a run's manifest records, `UNKNOWN` for a run stored before machine ids."""
    value = manifest.get("machine_id")
    return value if isinstance(value, str) and value else UNKNOWN


def machine_label(manifest: dict) -> str:
    """A run's machine for people: its description and id, or "unknown machine"."""
    machine = machine_of(manifest)
    if machine == UNKNOWN:
        return "unknown machine (stored before runs recorded their machine)"
    return f"{manifest.get('machine', '')} [{machine}]"


def same_machine(a: dict, b: dict) -> bool:
    """Whether two runs' manifests record the same machine (two runs of unknown machines count as one)."""
    return machine_of(a) == machine_of(b)

