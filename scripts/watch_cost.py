#!/usr/bin/env python3
"""What `porthog watch` and `porthog record` cost at a 1 s interval on a namespace of ~100k
sockets: in a throwaway namespace (range 1024-65535), two servers, two clients holding 19,000
connections each (76,000 sockets) and a third client leaving 25,000 TIME_WAIT sockets; then
each mode runs 20 s while its CPU time and peak RSS are read from /proc. Needs root and a
release build (cargo build --release --bins); traffic stays on the namespace's loopback.
  usage: sudo python3 scripts/watch_cost.py [watch] [record]
"""
import subprocess, json, os, sys, time
NS = f"porthog-measure-{os.getpid()}"
BIN = os.environ.get("PORTHOG_BIN", "target/release")
procs = []
def sh(*a): subprocess.run(a, check=True)
def lg(*args):
    p = subprocess.Popen(["ip", "netns", "exec", NS, f"{BIN}/porthog-loadgen", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(p)
    line = p.stdout.readline()
    r = json.loads(line)
    assert r["ready"], r
    return r
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS") or l.startswith("VmHWM"): print("   ", l.strip())
sh("ip", "netns", "add", NS)
try:
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535")
    sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=0")
    for port in (7070, 7071):
        lg("serve", "--listen", f"127.0.0.1:{port}")
    lg("serve", "--listen", "127.0.0.1:7072")
    for port in (7070, 7071):
        print(lg("connect", "--to", f"127.0.0.1:{port}", "--count", "19000")["opened"], flush=True)
    t = time.time()
    print(lg("connect", "--to", "127.0.0.1:7072", "--count", "25000", "--close")["opened"], "closed in", round(time.time() - t, 1), "s", flush=True)
    out = subprocess.run(["ip", "netns", "exec", NS, "ss", "-Htan"], capture_output=True, text=True).stdout
    print("sockets:", len(out.splitlines()), flush=True)
    for mode in sys.argv[1:] or ["watch", "record"]:
        if mode == "watch":
            cmd = [f"{BIN}/porthog", "watch", "--netns", NS, "--interval", "1"]
        else:
            cmd = [f"{BIN}/porthog", "record", "-o", "/tmp/porthog-watch-cost.jsonl", "--netns", NS, "--interval", "1"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        c0, t0 = cpu(p.pid), time.time()
        time.sleep(20)
        c1, t1 = cpu(p.pid), time.time()
        print(f"{mode}: CPU {100 * (c1 - c0) / (t1 - t0):.1f} % of one core at a 1 s interval", flush=True)
        rss(p.pid)
        p.terminate(); p.wait()
        if mode == "record":
            print("   recording:", os.path.getsize("/tmp/porthog-watch-cost.jsonl"), "bytes,", sum(1 for _ in open("/tmp/porthog-watch-cost.jsonl")), "lines")
            os.remove("/tmp/porthog-watch-cost.jsonl")
    t = time.time()
    subprocess.run([f"{BIN}/porthog", "check", "--netns", NS, "--json"], stdout=subprocess.DEVNULL)
    print("one check:", round(time.time() - t, 3), "s")
finally:
    for p in procs:
        p.stdin.close()
    for p in procs:
        try: p.wait(timeout=20)
        except Exception: p.kill(); p.wait()
    subprocess.run(["ip", "netns", "del", NS])
