#!/usr/bin/env python3
"""bench/run: latchkey's throughput, latency and memory, measured with wrk.

Builds the release binary (with the `bench` feature for the ceiling route),
starts a throwaway PostgreSQL, seeds a user, and for each backend starts a
fresh server per scenario, drives it with wrk (15 s, 64 connections) and
records req/s, p50, p99, errors and the server's peak RSS. Every row is also
given as a ratio to the ceiling measured in the same run; logins are compared
with the bcrypt bound (cores / time of one hash) measured in the same run.
Prints one table and writes bench/RESULTS.md.

Environment: BENCH_DURATION (seconds, default 15), BENCH_CONNECTIONS (64).
"""

import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "latchkey")
DURATION = int(os.environ.get("BENCH_DURATION", "15"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
USER, PASSWORD = "bench_user", "bench password 1"

# A wrk script that reports what we need as one JSON line.
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def log(message):
    print(f"== {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, **kwargs)


def as_postgres(cmd):
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def pg_bin():
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v), reverse=True)
    return f"/usr/lib/postgresql/{versions[0]}/bin"


class Postgres:
    """A throwaway cluster, tuned like a small production one (fsync on)."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "pg")
        os.makedirs(self.dir)
        os.chmod(workdir, 0o755)
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.bin = pg_bin()
        run(as_postgres([f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-U", "postgres",
                         "--auth=trust", "-E", "UTF8", "--locale=C"]), stdout=subprocess.DEVNULL)
        run(as_postgres([f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w",
                         "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                               "-c max_connections=200 -c shared_buffers=128MB",
                         "start"]), stdout=subprocess.DEVNULL)
        run(["psql", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-c", "CREATE DATABASE bench"])
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/bench"

    def stop(self):
        subprocess.run(as_postgres([f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-m", "fast",
                                    "-w", "stop"]), stdout=subprocess.DEVNULL)


class Server:
    def __init__(self, database_url, workdir, env=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {
            "PATH": os.environ["PATH"],
            "DATABASE_URL": database_url,
            "LATCHKEY_ADDR": f"127.0.0.1:{self.port}",
            "LATCHKEY_SECRET_KEY": "ab" * 64,
            "LATCHKEY_COOKIE_SECURE": "false",
            "LATCHKEY_BCRYPT_COST": "12",
            "LATCHKEY_LOGIN_MAX_FAILURES": "1000000",
            "RUST_LOG": "info",
        }
        environment.update(env or {})
        self.log = open(os.path.join(workdir, f"server-{self.port}.log"), "w")
        self.process = subprocess.Popen([BIN, "serve"], env=environment, cwd=workdir,
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/readyz", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.05)

    def login_cookie(self):
        request = urllib.request.Request(
            f"{self.base}/login", method="POST",
            data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request) as response:
            for header, value in response.getheaders():
                if header.lower() == "set-cookie" and value.startswith("latchkey_session="):
                    return value.split(";")[0]
        raise RuntimeError("no session cookie")

    def peak_rss_mb(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def wrk(url, workdir, headers=(), body=None, duration=DURATION, connections=CONNECTIONS):
    script = REPORT_LUA
    if body is not None:
        script = (f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                  'wrk.headers["Content-Type"] = "application/json"\n') + script
    path = os.path.join(workdir, f"wrk-{time.time_ns()}.lua")
    with open(path, "w") as f:
        f.write(script)
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", path]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("WRK_JSON "))
    stats = json.loads(line[len("WRK_JSON "):])
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    return stats


def one_hash_seconds():
    """The time of one bcrypt hash at cost 12, net of process start-up: the
    median of 7 runs (the fastest would make an optimistic bound on a shared VM)."""
    def typical(cost, runs=7):
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            run([BIN, "hash-password", "--password-stdin"], input=b"bench password 1\n",
                env={"PATH": os.environ["PATH"], "LATCHKEY_BCRYPT_COST": str(cost)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]
    return typical(12) - typical(4)


def scenarios(database_url, workdir):
    """Runs every scenario against one backend; returns {name: stats}."""
    html = "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"
    results = {}

    def fresh(run_scenario, env=None):
        server = Server(database_url, workdir, env)
        try:
            stats = run_scenario(server)
            stats["rss_mb"] = server.peak_rss_mb()
            return stats
        finally:
            server.stop()

    results["ceiling"] = fresh(lambda s: wrk(f"{s.base}/bench/ceiling", workdir))
    results["protected_json"] = fresh(
        lambda s: wrk(f"{s.base}/protected", workdir, headers=[f"Cookie: {s.login_cookie()}"]))
    results["protected_json_uncached"] = fresh(
        lambda s: wrk(f"{s.base}/protected", workdir, headers=[f"Cookie: {s.login_cookie()}"]),
        env={"LATCHKEY_SESSION_CACHE": "false"})
    results["protected_html"] = fresh(
        lambda s: wrk(f"{s.base}/protected", workdir, headers=[f"Cookie: {s.login_cookie()}", html]))
    results["login_page"] = fresh(lambda s: wrk(f"{s.base}/login", workdir, headers=[html]))
    results["login"] = fresh(
        lambda s: wrk(f"{s.base}/login", workdir, body=json.dumps({"username": USER, "password": PASSWORD})))

    def protected_under_flood(server):
        cookie = server.login_cookie()
        body = json.dumps({"username": USER, "password": PASSWORD})
        lua = os.path.join(workdir, "flood.lua")
        with open(lua, "w") as f:
            f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
        flood = subprocess.Popen(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION + 4}s",
                                  "--timeout", "10s", "-s", lua, f"{server.base}/login"],
                                 stdout=subprocess.DEVNULL)
        time.sleep(2)
        try:
            return wrk(f"{server.base}/protected", workdir, headers=[f"Cookie: {cookie}"])
        finally:
            flood.wait()

    results["protected_during_login_flood"] = fresh(protected_under_flood)
    return results


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return os.cpu_count(), model


def main():
    log("building the release binary (feature: bench)")
    run(["cargo", "build", "--release", "--features", "bench", "--quiet"], cwd=ROOT)
    if not shutil.which("wrk"):
        log("installing wrk")
        run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL)
        run(["apt-get", "install", "-y", "-qq", "wrk"], stdout=subprocess.DEVNULL)

    workdir = tempfile.mkdtemp(prefix="latchkey-bench-")
    postgres = Postgres(workdir)
    try:
        backends = {"postgres": postgres.url, "sqlite": f"sqlite://{workdir}/bench.db"}
        for url in backends.values():
            env = {"PATH": os.environ["PATH"], "DATABASE_URL": url, "LATCHKEY_BCRYPT_COST": "12"}
            run([BIN, "user", "add", USER, "--password-stdin"], input=f"{PASSWORD}\n".encode(),
                env=env, stdout=subprocess.DEVNULL)
        log("timing one bcrypt hash at cost 12")
        hash_seconds = one_hash_seconds()
        results = {}
        for name, url in backends.items():
            log(f"{name}: scenarios of {DURATION} s at {CONNECTIONS} connections")
            results[name] = scenarios(url, workdir)
    finally:
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    cores, model = machine()
    bound = cores / hash_seconds
    report = render(results, bound, hash_seconds, cores, model)
    print(report)
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write(report)
    log("written to bench/RESULTS.md")


def render(results, bound, hash_seconds, cores, model):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    today = datetime.date.today().isoformat()
    lines = [
        "# latchkey benchmarks",
        "",
        f"Measured {today} on {cores} cores ({model}), commit `{commit}`, with `bench/run`:",
        f"wrk on the same machine, {DURATION} s per scenario, {CONNECTIONS} connections, a fresh",
        "server per scenario, bcrypt cost 12, request logs on (`RUST_LOG=info`).",
        "",
        "## Targets (ratios within this run)",
        "",
        "| target | goal | today | met |",
        "|---|---|---|---|",
    ]
    def check(name, goal, value, ok):
        lines.append(f"| {name} | {goal} | {value} | {'yes' if ok else '**no**'} |")

    for backend in ("postgres", "sqlite"):
        r = results[backend]
        ratio = r["protected_json"]["rps"] / r["ceiling"]["rps"]
        check(f"GET /protected on {backend} vs ceiling", ">= 50%", f"{ratio:.0%}", ratio >= 0.5)
    for backend in ("postgres", "sqlite"):
        r = results[backend]
        ratio = r["login"]["rps"] / bound
        check(f"logins/s on {backend} vs bcrypt bound ({bound:.1f}/s)", ">= 90%",
              f"{ratio:.0%}", ratio >= 0.9)
    for backend in ("postgres", "sqlite"):
        r = results[backend]
        ratio = r["protected_during_login_flood"]["rps"] / r["protected_json"]["rps"]
        p99 = r["protected_during_login_flood"]["p99_us"] / 1000
        check(f"GET /protected during a login flood on {backend}", ">= 50% of unloaded, p99 <= 25 ms",
              f"{ratio:.0%}, p99 {p99:.1f} ms", ratio >= 0.5 and p99 <= 25)
    peak = max(s["rss_mb"] for r in results.values() for s in r.values())
    check("peak RSS, any scenario", "<= 32 MB", f"{peak:.1f} MB", peak <= 32)

    lines += [
        "",
        f"One bcrypt hash at cost 12 (median of 7): {hash_seconds * 1000:.0f} ms, so the bound is "
        f"{cores} / {hash_seconds:.3f} s = {bound:.1f} logins/s.",
        "",
        "## Scenarios",
        "",
        "| backend | scenario | req/s | vs ceiling | p50 | p99 | errors | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, r in results.items():
        ceiling = r["ceiling"]["rps"]
        for name, s in r.items():
            lines.append(
                f"| {backend} | {name} | {s['rps']:,.0f} | {s['rps'] / ceiling:.1%} | "
                f"{s['p50_us'] / 1000:.2f} ms | {s['p99_us'] / 1000:.2f} ms | {s['errors']} | "
                f"{s['rss_mb']:.1f} MB |")
    lines.append("")
    profile = os.path.join(ROOT, "bench", "PROFILE.md")
    if os.path.exists(profile):
        with open(profile) as f:
            lines.append(f.read())
    return "\n".join(lines)


if __name__ == "__main__":
    main()
