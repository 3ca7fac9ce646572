#!/usr/bin/env python3
"""What `porthog watch` and `porthog record` cost at a 1 s interval on a namespace of ~100k
sockets: in a throwaway namespace (range 1024-65535), two servers, two clients holding 19,000
connections each (76,000 sockets) and a churning client (connect + close at 400/s, so about
24,000 TIME_WAIT sockets stay, and new connections appear in every sample); then each run
lasts SECONDS (default 15) after a 3 s warm-up while its CPU time and peak RSS are read from
/proc. Needs root and a release build (cargo build --release --bins); traffic stays on the
namespace's loopback.
  usage: sudo python3 scripts/watch_cost.py [RUN...]
  RUN: watch | record | watch-nobpf | record-nobpf, optionally @DIR for the porthog binary's
       directory (default $PORTHOG_BIN or target/release), e.g. watch-nobpf@/tmp/old;
       or floor: the bare sock_diag dump porthog asks for, once a second, with no porthog
       (scripts/sock_diag_floor.py): the kernel's cost, which no sampler that re-dumps avoids
  PORTHOG_TIMINGS=1 adds each run's median digest timings (owner book, TIME_WAIT, new
  connections, analysis), read from porthog's stderr.
"""
import subprocess, json, os, re, sys, time
NS = f"porthog-measure-{os.getpid()}"
BIN = os.environ.get("PORTHOG_BIN", "target/release")
SECONDS = float(os.environ.get("SECONDS_PER_RUN", "15"))
procs = []
def sh(*a): subprocess.run(a, check=True)
def lg(*args, wait=True):
    p = subprocess.Popen(["ip", "netns", "exec", NS, f"{BIN}/porthog-loadgen", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(p)
    if not wait:
        return p
    line = p.stdout.readline()
    r = json.loads(line)
    assert r["ready"], r
    return r
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def hwm(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM"): return l.split()[1]
def sockets():
    out = subprocess.run(["ip", "netns", "exec", NS, "ss", "-Htan"], capture_output=True, text=True).stdout
    return len(out.splitlines())
churn = None
sh("ip", "netns", "add", NS)
try:
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535")
    sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=0")
    for port in (7070, 7071, 7072):
        lg("serve", "--listen", f"127.0.0.1:{port}")
    for port in (7070, 7071):
        print(lg("connect", "--to", f"127.0.0.1:{port}", "--count", "19000")["opened"], flush=True)
    churn = lg("connect", "--to", "127.0.0.1:7072", "--count", "10000000", "--close", "--rate", "400", wait=False)
    print("churning for 62 s to fill TIME_WAIT", flush=True)
    time.sleep(62)
    print("load average:", open("/proc/loadavg").read().strip(), flush=True)
    for run in sys.argv[1:] or ["watch", "record"]:
        if run == "floor":
            here = os.path.dirname(os.path.abspath(__file__))
            sh("ip", "netns", "exec", NS, sys.executable, f"{here}/sock_diag_floor.py", str(SECONDS))
            continue
        mode, _, bindir = run.partition("@")
        bindir = bindir or BIN
        env = dict(os.environ)
        if mode.endswith("-nobpf"):
            env["PORTHOG_NO_BPF"] = "1"
        if mode.startswith("watch"):
            cmd = [f"{bindir}/porthog", "watch", "--netns", NS, "--interval", "1"]
        else:
            cmd = [f"{bindir}/porthog", "record", "-o", "/tmp/porthog-watch-cost.jsonl", "--netns", NS, "--interval", "1"]
        before = sockets()
        # With PORTHOG_TIMINGS=1, each sample's digest timings are read from stderr.
        timings = open(f"/tmp/porthog-watch-cost-{os.getpid()}.err", "w+") if "PORTHOG_TIMINGS" in env else subprocess.DEVNULL
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=timings, env=env)
        time.sleep(3)
        c0, t0 = cpu(p.pid), time.time()
        time.sleep(SECONDS)
        c1, t1 = cpu(p.pid), time.time()
        print(f"{run}: CPU {100 * (c1 - c0) / (t1 - t0):.1f} % of one core at a 1 s interval, "
              f"VmHWM {int(hwm(p.pid)) // 1024} MiB, {before} TCP sockets (ss), "
              f"load average {open('/proc/loadavg').read().split()[0]}", flush=True)
        total = cpu(p.pid)
        p.terminate(); p.wait()
        if timings != subprocess.DEVNULL:
            timings.seek(0)
            digests = [[float(x) for x in re.findall(r"[0-9]+\.[0-9]+", l)]
                       for l in timings if "sample digested in" in l]
            timings.close(); os.remove(timings.name)
            if digests:
                med = [sorted(col)[len(col) // 2] for col in zip(*digests)]
                print(f"   digest, median of {len(digests)} samples (ms): total {med[0]:.1f}, owner book "
                      f"{med[1]:.1f}, TIME_WAIT {med[2]:.1f}, new connections {med[3]:.1f}, analysis {med[4]:.1f}",
                      flush=True)
        if mode.startswith("record"):
            lines = sum(1 for _ in open("/tmp/porthog-watch-cost.jsonl"))
            # On a busy machine a starved sampler takes fewer samples, which lowers its % of a
            # core: CPU per sample (the whole run's, first sample and start-up included) does not.
            print("   recording:", os.path.getsize("/tmp/porthog-watch-cost.jsonl"), "bytes,", lines, "lines,",
                  f"{1000 * total / max(lines - 1, 1):.0f} ms CPU per sample (whole run)", flush=True)
            os.remove("/tmp/porthog-watch-cost.jsonl")
finally:
    for p in procs:
        p.stdin.close()
    if churn: churn.kill()
    for p in procs:
        try: p.wait(timeout=20)
        except Exception: p.kill(); p.wait()
    subprocess.run(["ip", "netns", "del", NS])
