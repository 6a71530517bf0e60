"""Hostile programs in the sandbox: every one ends with a non-pass verdict and a reason, leaves no
trace on the host, and the harness carries on with the next sample. Also: the loud fallback when
bubblewrap is missing, C++/Java when present, and the worker pool's bookkeeping."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from evaluator import sandbox as sandbox_mod
from evaluator.jobs import Job, Test
from evaluator.sandbox import UID_BASE, Limits, Sandbox, SandboxWarning, probe_isolation
from mosaic.errors import MosaicError

SECRET = "s3cr3t-7f1c2e9a"
LIMITS = Limits(time_s=1.0, wall_s=2.0, memory_mb=256, stdout_bytes=1 << 20)
NORMAL = Job("python", "a, b = map(int, input().split())\nprint(a + b)\n", (Test(b"2 3\n", "5"),), LIMITS)


def hostile_programs(host_dir: str, port: int) -> dict[str, tuple[str, str]]:
    """name -> (source, expected stdout). Each program prints what it achieved; the expected
    output is the 'escaped' outcome, so containment shows up as a non-pass verdict."""
    return {
        "fork bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", "x"),
        "memory bomb": ("chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n", "x"),
        "group memory bomb": ("import os, time\nfor _ in range(15):\n    if os.fork() == 0:\n        break\n"
                              "data = b'1' * (250 << 20)\ntime.sleep(0.5)\nprint('all alive')\n", "x"),
        "thread bomb": ("import threading, time\nwhile True:\n"
                        "    threading.Thread(target=time.sleep, args=(100,)).start()\n", "x"),
        "infinite loop": ("while True:\n    pass\n", "x"),
        "write outside": (
            "import os\nwritten = []\n"
            f"for path in [{host_dir!r} + '/pwned.txt', '/usr/pwned.txt', '/etc/pwned.txt', '/pwned.txt',\n"
            "             '/root/pwned.txt', '/proc/sys/kernel/hostname']:\n"
            "    try:\n        with open(path, 'w') as f:\n            f.write('pwned')\n"
            "        written.append(path)\n    except OSError:\n        pass\n"
            "print('escaped' if written else 'contained', *written)\n", "escaped"),
        "loopback connect": (
            "import socket\ns = socket.socket()\ns.settimeout(1)\n"
            f"try:\n    s.connect(('127.0.0.1', {port}))\n    s.sendall(b'hello')\n    print('connected')\n"
            "except OSError as e:\n    print('refused', type(e).__name__)\n", "connected"),
        "detached child": (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        time.sleep(60)\n    os._exit(0)\nprint('parent done')\n", "parent done"),
        "daemon without stdout": (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    for fd in (0, 1, 2):\n        os.close(fd)\n"
            "    time.sleep(60)\n    os._exit(0)\nprint('daemonised')\n", "alive"),
        "unbounded output": ("while True:\n    print('x' * 1000)\n", "x"),
        "kill parent": (
            "import os, signal, time\n"
            "for pid in {os.getppid(), 1}:\n    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):\n"
            "        try:\n            os.kill(pid, sig)\n        except OSError:\n            pass\n"
            "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
            "time.sleep(0.2)\nprint('parent survived')\n", "parent killed"),
        "fd exhaustion": ("files = []\nwhile True:\n    files.append(open('/dev/null'))\n", "x"),
        "read secrets": (
            "import os\nfound = [k for k, v in os.environ.items() if 's3cr3t' in v]\n"
            f"for path in ['/proc/1/environ', f'/proc/{{os.getppid()}}/environ', {host_dir!r} + '/secret.txt']:\n"
            "    try:\n        if 's3cr3t' in open(path, 'rb').read().decode('latin-1'):\n"
            "            found.append(path)\n    except OSError:\n        pass\n"
            "print(*(found or ['nothing']))\n", SECRET),
        "close stdout then sleep": ("import os, time\nos.close(1)\ntime.sleep(60)\n", "x"),
        "disk filler": ("import os\ni = 0\nwhile True:\n    with open(f'/tmp/fill{i}', 'wb') as f:\n"
                        "        f.write(b'0' * (32 << 20))\n    i += 1\n", "x"),
        "ptrace the server": (
            "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.ptrace(16, os.getppid(), 0, 0)\n"  # PTRACE_ATTACH
            "try:\n    open(f'/proc/{os.getppid()}/mem', 'rb').read(1)\n    mem = 'read'\n"
            "except OSError:\n    mem = 'denied'\nprint('attached' if r == 0 else 'refused', mem)\n", "attached read"),
    }


def sandbox_uid_processes(n: int = 64) -> list[int]:
    """Live host pids (zombies are dead, awaiting their reaper) running as this process's sandbox uids."""
    uids = set(range(UID_BASE + 64 * os.getpid(), UID_BASE + 64 * os.getpid() + n))
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid in uids:
                    with open(f"/proc/{name}/stat", "rb") as f:
                        if f.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                            out.append(int(name))
            except OSError:
                pass
    return out


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                accepted.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    t.join()
    srv.close()


@pytest.fixture
def host_dir():
    """A world-writable host directory (in world-traversable /tmp) holding a world-readable secret:
    only the sandbox's mount namespace keeps a program from it, not the uid drop."""
    path = tempfile.mkdtemp(prefix="mosaic-hostile-", dir="/tmp")
    os.chmod(path, 0o777)
    with open(os.path.join(path, "secret.txt"), "w") as f:
        f.write(SECRET)
    os.chmod(os.path.join(path, "secret.txt"), 0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_hostile(sb: Sandbox, host_dir: str, port: int):
    programs = hostile_programs(host_dir, port)
    jobs = []
    for source, expected in programs.values():
        jobs += [Job("python", source, (Test(b"", expected),), LIMITS), NORMAL]
    started = time.monotonic()
    results = sb.run(jobs)
    return programs, results, time.monotonic() - started


@pytest.fixture
def bwrap_required():
    """Skip only where bubblewrap is not installed (`make test` installs it); installed but not
    working is a failure, so CI cannot pass without real isolation."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (make test installs it)")
    isolation = probe_isolation()[0]
    assert not isolation.degraded, isolation.reason


def test_hostile_programs_are_contained(bwrap_required, host_dir, listener, monkeypatch):
    port, accepted = listener
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("MOSAIC_TEST_SECRET", SECRET)
    fds_before = len(os.listdir("/proc/self/fd"))
    with Sandbox(2, quiet=True) as sb:
        assert not sb.isolation.degraded and sb.isolation.level.startswith("bwrap")
        programs, results, elapsed = run_hostile(sb, host_dir, port)
        assert len(sandbox_uid_processes()) <= 2 * 2  # only the workers (bwrap + server each) are left
    verdicts = dict(zip(programs, results[0::2]))
    for name, res in verdicts.items():
        assert not res.passed and res.reason, (name, res)
    for res in results[1::2]:  # the harness carried on: the normal sample after each hostile one passes
        assert res.passed, res
    cgroups = any(layer.startswith("cgroup") for layer in sb.isolation.layers)
    expected = {"fork bomb": {"timeout", "runtime_error"}, "memory bomb": {"memory_limit"},
                # at the cgroup's memory ceiling the tasks may stall in reclaim until the wall clock ends
                # them (seen on a loaded 2-core machine); without cgroups 16 x 250 MB may outlast it too:
                # either way a contained non-pass
                "group memory bomb": {"memory_limit", "timeout"} if cgroups else {"wrong_answer", "memory_limit",
                                                                                  "timeout"},
                "thread bomb": {"runtime_error", "timeout"}, "infinite loop": {"timeout"},
                "write outside": {"wrong_answer"}, "loopback connect": {"wrong_answer"},
                "detached child": {"timeout"}, "daemon without stdout": {"wrong_answer"},
                "unbounded output": {"output_limit"}, "kill parent": {"wrong_answer"},
                "fd exhaustion": {"runtime_error"}, "read secrets": {"wrong_answer"},
                "close stdout then sleep": {"timeout"}, "disk filler": {"runtime_error"},
                "ptrace the server": {"wrong_answer"}}
    for name, statuses in expected.items():
        assert verdicts[name].status in statuses, (name, verdicts[name])
    assert "contained" in verdicts["write outside"].reason
    assert "refused" in verdicts["loopback connect"].reason and not accepted
    assert "survived" in verdicts["kill parent"].reason
    assert "nothing" in verdicts["read secrets"].reason
    assert "'refused'" in verdicts["ptrace the server"].reason
    assert "No space left on device" in verdicts["disk filler"].reason  # the size-capped tmpfs
    assert "leftover process" in verdicts["detached child"].reason
    assert sorted(os.listdir(host_dir)) == ["secret.txt"]
    for path in ("/usr/pwned.txt", "/etc/pwned.txt", "/pwned.txt", "/root/pwned.txt"):
        assert not os.path.exists(path)
    assert sandbox_uid_processes() == []  # nothing outlives the pool, detached or not
    assert not list(Path("/sys/fs/cgroup").glob(f"*/**/mosaic-{os.getpid()}-*"))  # cgroups removed
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 1
    assert elapsed < 60


@pytest.fixture
def no_bwrap(monkeypatch):
    """Simulate a machine without bubblewrap."""
    real_which = shutil.which
    monkeypatch.setattr(sandbox_mod.shutil, "which", lambda name, **kw: None if name == "bwrap" else
                        real_which(name, **kw))
    monkeypatch.setattr(sandbox_mod, "_probe_cache", {})


def test_fallback_without_bwrap_is_loud_and_recorded(no_bwrap, capsys):
    with pytest.warns(SandboxWarning, match="WITHOUT NAMESPACE ISOLATION"):
        sb = Sandbox(1)
    with sb:
        assert sb.isolation.degraded and "bwrap" not in sb.isolation.level
        assert "not installed" in sb.isolation.reason and "network isolation" in sb.isolation.missing
        assert sb.isolation.level == ("uid+rlimits" if os.geteuid() == 0 else "rlimits")
        res = sb.run([NORMAL])[0]
        assert res.passed
    assert "WARNING: sandbox:" in capsys.readouterr().err
    with pytest.raises(MosaicError, match="full isolation required"):
        Sandbox(1, require_isolation=True)


def test_fallback_report_flags_degraded_isolation(no_bwrap):
    from evaluator.passk import PassKOptions, score_samples

    rows = [{"id": "p/0", "item_id": "p", "tests": {"input": ["2 3\n"], "output": ["5\n"], "kind": ["public"]}}]
    with pytest.warns(SandboxWarning):
        rep = score_samples(rows, [{"id": "p/0", "completion": NORMAL.source}], [1], workers=1,
                            options=PassKOptions(time_scale=1.0))
    assert rep.isolation["degraded"] is True and rep.isolation["reason"]
    assert rep.samples[0]["passed"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid fallback needs root")
def test_fallback_still_contains_processes_and_limits(no_bwrap, host_dir, listener, monkeypatch):
    port, _ = listener
    monkeypatch.setenv("HF_TOKEN", SECRET)
    programs = hostile_programs(host_dir, port)
    names = ["fork bomb", "memory bomb", "infinite loop", "detached child", "kill parent", "fd exhaustion",
             "unbounded output", "read secrets"]
    with pytest.warns(SandboxWarning):
        sb = Sandbox(2, quiet=True)
    with sb:
        jobs = []
        for name in names:
            jobs += [Job("python", programs[name][0], (Test(b"", programs[name][1]),), LIMITS), NORMAL]
        results = sb.run(jobs)
    for name, res in zip(names, results[0::2]):
        assert not res.passed and res.reason, (name, res)
    assert all(r.passed for r in results[1::2])
    secrets = results[2 * names.index("read secrets")].reason
    assert "HF_TOKEN" not in secrets and "environ" not in secrets  # env scrubbed, the parent's unreadable
    assert "secret.txt" in secrets  # the degradation is real: no filesystem isolation without bwrap
    assert sandbox_uid_processes() == []


def test_compiled_languages_when_present():
    with Sandbox(1, quiet=True) as sb:
        jobs = [
            Job("cpp", "#include <cstdio>\nint main(){long long a, b; scanf(\"%lld %lld\", &a, &b);"
                "printf(\"%lld\\n\", a + b);}", (Test(b"2 3\n", "5"),), LIMITS),
            Job("cpp", "int main( {", (Test(b"", "5"),), LIMITS),
            Job("cpp", "#include <unistd.h>\nint main(){while(1) fork();}", (Test(b"", "5"),), LIMITS),
            Job("java", "import java.util.*;\npublic class Sol { public static void main(String[] a) {\n"
                "Scanner s = new Scanner(System.in); System.out.println(s.nextInt() + s.nextInt()); } }",
                (Test(b"2 3\n", "5"),), LIMITS),
        ]
        cpp_ok, cpp_bad, cpp_bomb, java_ok = sb.run(jobs)
        tools = sb.tools
    if tools.gxx:
        assert cpp_ok.passed, cpp_ok
        assert cpp_bad.status == "compile_error" and cpp_bad.reason
        assert not cpp_bomb.passed and cpp_bomb.reason
    else:
        assert cpp_ok.status == "sandbox_error" and "g++" in cpp_ok.reason
    if tools.java and tools.javac:
        assert java_ok.passed, java_ok
    else:
        assert java_ok.status == "sandbox_error"


def test_worker_restarts_after_being_lost():
    with Sandbox(1, quiet=True) as sb:
        assert sb.run([NORMAL])[0].passed
        worker = sb._pool[0]
        os.killpg(worker.proc.pid, 9)  # the worker dies between jobs: the next job gets a fresh one
        worker.proc.wait()
        assert sb.run([NORMAL])[0].passed


UNPRIVILEGED = """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
from evaluator.jobs import Job, Test
from evaluator.sandbox import Limits, Sandbox
lim = Limits(time_s=1.0, wall_s=2.0)
jobs = [Job("python", "print(int(input()) * 2)", (Test(b"21\\n", "42"),), lim),
        Job("python", "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n",
            (Test(b"", "1"),), lim),
        Job("python", "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(30)\\nprint(1)",
            (Test(b"", "1"),), lim)]
out = {}
for use_bwrap in (True, False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb = Sandbox(1, use_bwrap=use_bwrap, quiet=True)
    with sb:
        out[sb.isolation.level] = [r.status for r in sb.run(jobs)]
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to switch user")
def test_unprivileged_user_gets_bwrap_or_loud_rlimits_fallback():
    import json
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    if any(p.stat().st_mode & 0o005 != 0o005 for p in (repo, *repo.parents)):
        pytest.skip("the repository is not readable by an unprivileged user here")
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
                           UNPRIVILEGED, str(repo)], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert set(out) == ({"bwrap+rlimits", "rlimits"} if shutil.which("bwrap") else {"rlimits"})
    for statuses in out.values():
        assert statuses == ["passed", "timeout", "timeout"]
