"""``parm bench latency``: tail latency of every mode, side by side, measured at the client.

For each k, one local cluster per mode is started -- ``coded`` (k*g data instances of F
and g of the parity model), ``equal-resources`` and ``replicate`` (the same k*g + g
instances, all running F), ``none`` (the same processes; only the k*g data instances
serve) -- so every mode has the same number of instance processes, the same padded
service time and the same contention.  All clusters of one k stay up together and the
runs are interleaved mode by mode (rate, then repeat, then mode): a machine whose
background load drifts during the benchmark (other work on a shared box) drifts for
every mode alike.  Each run uses the same seed for the arrivals and for the contention
schedule across modes, so mode is the only thing that changes between them.

Idle clusters cost next to nothing (padded instances sleep), which is why keeping them
up beats restarting: a restart would change processes, ports and warm caches between
the modes being compared.  The frontend runs in this process; the load generator
(``bench.loadgen``) runs in its own, so the two do not share an event loop.

Instances pad each inference to ``service_time_ms`` (the model container's
``--service-time-ms``): a stand-in for an accelerator's service time on a CPU-only
machine, reported as such, never as GPU time.  Under shuffle contention each instance
gets a sidecar process (``bench.contention.sidecar``), started with its cluster and
stopped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.contention import ActiveContention, Contention, parse_contention
from bench.contention.shuffle import Endpoint
from bench.contention.sidecar import ShuffleSidecars
from bench.looplag import LoopLag
from bench.report import variants
from common.bundle import read_manifest
from deploy.local import LocalCluster
from deploy.netns import NetworkSpec
from deploy.spec import Deployment, ModelDeployment
from frontend.config import decode_grace_seconds
from frontend.events import Mode
from model_container.config import ContainerConfig

MODEL = "digits"
ALL_MODES = (Mode.CODED, Mode.EQUAL_RESOURCES, Mode.HEDGE, Mode.REPLICATE, Mode.NONE)
#: the papers' shuffles, scaled to what this machine's cores can carry (see RESULTS.md)
PAPERS_LOCAL = "shuffle:concurrency=1"
#: on a netns network the papers' own shuffles (128-256 MB transfers, scaled to the link
#: rate): what they cost is link time, not this machine's cores.  One at a time among the
#: study's k*2 + 2 hosts keeps a third of them busy at k=2 (papers: 4 among 18, 44%)
PAPERS_NETNS = "shuffle:concurrency=1"


@dataclass(frozen=True)
class LatencyPlan:
    """What ``parm bench latency`` runs."""

    ks: tuple[int, ...] = (2, 3, 4)
    modes: tuple[Mode, ...] = ALL_MODES
    rates: tuple[float, ...] = (60.0, 120.0, 180.0)
    repeats: int = 3
    queries: int = 8_000
    warmup: int = 500
    groups: int = 2  # instances: k * groups data + groups parity
    service_time_ms: float = 10.0
    contention: Contention = field(default_factory=lambda: parse_contention(PAPERS_LOCAL))
    seed: int = 0
    settle_s: float = 2.0  # contention runs this long before the client starts
    transport: str = "grpc"  # or "http": KServe v2 REST
    #: coded mode runs once per value ("auto", or milliseconds; "0" is eager decoding),
    #: side by side; the first is labelled plain "coded"
    decode_graces: tuple[str, ...] = ("auto",)
    #: "loopback": every instance a process on this host; "netns": each on a host of
    #: its own (``deploy.netns``), its link rate-limited to ``link_mbit`` both ways, and
    #: the shuffles' sizes scaled to that rate (``Contention.scaled_to``)
    network: str = "loopback"
    link_mbit: float = 100.0
    link_queue_ms: float = 20.0
    #: offered loads as shares of the cluster's capacity, replacing ``rates`` when given.
    #: The capacity is derived, not measured: k*groups data instances, each serving one
    #: query per service time (``capacity``); every mode of one k is offered the same rates
    loads: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.ks or not self.modes or not self.rates or self.repeats < 1:
            raise ValueError("a plan needs at least one k, mode, rate and repeat")
        if any(not 0 < load <= 2 for load in self.loads):
            raise ValueError(f"loads: expected shares of capacity in (0, 2], got {self.loads}")
        if self.transport not in ("grpc", "http"):
            raise ValueError(f"transport: expected grpc or http, got {self.transport!r}")
        if not self.decode_graces:
            raise ValueError("a plan needs at least one decode grace")
        for grace in self.decode_graces:
            decode_grace_seconds(grace)  # refused now, not after an hour of runs
        if self.network not in ("loopback", "netns"):
            raise ValueError(f"network: expected loopback or netns, got {self.network!r}")
        if self.contention.cutoff is not None and self.network != "netns":
            raise ValueError("cutoff contention needs hosts on a network: --network netns")

    @property
    def network_spec(self) -> NetworkSpec | None:
        if self.network != "netns":
            return None
        return NetworkSpec(rate_mbit=self.link_mbit, queue_ms=self.link_queue_ms)

    @property
    def injected(self) -> Contention:
        """The contention as injected: shuffles scaled to the links on a netns network."""
        if self.network != "netns":
            return self.contention
        return self.contention.scaled_to(self.link_mbit)

    def variants(self) -> list[tuple[str, Mode, str]]:
        """(label, mode, decode grace) of each cluster: coded once per grace."""
        return variants(self.modes, self.decode_graces)

    def instances(self, k: int) -> int:
        return k * self.groups + self.groups

    def capacity(self, k: int) -> float:
        """Queries/s the k*groups data instances serve, one per service time (derived)."""
        return k * self.groups * 1000.0 / self.service_time_ms

    def rates_for(self, k: int) -> tuple[float, ...]:
        """The rates run at ``k``: the loads' shares of its capacity, or the plan's rates."""
        if not self.loads:
            return self.rates
        return tuple(round(load * self.capacity(k), 1) for load in self.loads)

    def describe(self) -> dict[str, Any]:
        return {
            "ks": list(self.ks),
            "modes": [m.value for m in self.modes],
            "rates": {str(k): list(self.rates_for(k)) for k in self.ks},
            "loads": list(self.loads),
            "capacity": {str(k): self.capacity(k) for k in self.ks},
            "capacity_method": "derived: k*groups data instances x 1000/service_time_ms "
            "queries/s each (not measured)",
            "repeats": self.repeats,
            "queries": self.queries,
            "warmup": self.warmup,
            "groups": self.groups,
            "service_time_ms": self.service_time_ms,
            "service_time": "padded (sleep) on CPU instances, standing in for an "
            "accelerator's service time; not GPU time",
            "contention": self.contention.text,
            "contention_description": self.injected.describe(),
            "network": self.network,
            "link_mbit": self.link_mbit if self.network == "netns" else None,
            "link_queue_ms": self.link_queue_ms if self.network == "netns" else None,
            "seed": self.seed,
            "transport": self.transport,
            "decode_graces": list(self.decode_graces),
        }


#: ``--quick``: k=2, coded against equal-resources and hedged requests (8 + 4 against 12
#: instances each), one rate, papers'-style shuffles; about 10 minutes on a 2-core machine.
QUICK = LatencyPlan(
    ks=(2,),
    modes=(Mode.CODED, Mode.EQUAL_RESOURCES, Mode.HEDGE),
    rates=(120.0,),
    repeats=3,
    queries=6_000,
    warmup=400,
    groups=4,
)

#: ``--quick --network netns``: k=2, every mode (coded eager and with the auto grace) on
#: 6 hosts each, two loads: 36 runs of 15-25 s, about 13 minutes on a 2-core machine
#: (estimated from the netns study's run times in RESULTS.md, not timed as such)
QUICK_NETNS = LatencyPlan(
    ks=(2,),
    rates=(120.0,),
    loads=(0.3, 0.6),
    repeats=3,
    queries=2_000,
    warmup=200,
    groups=2,
    contention=parse_contention(PAPERS_NETNS),
    decode_graces=("auto", "0"),
    network="netns",
    link_mbit=50.0,
    link_queue_ms=100.0,
)

#: ``--network netns`` without ``--quick``: the study, 30% to 80% of capacity
NETNS = replace(QUICK_NETNS, ks=(2, 3, 4), loads=(0.3, 0.55, 0.8), queries=3_000, warmup=300)


@dataclass
class ModeCluster:
    """One mode's cluster and its instances' shuffle sidecars (none without shuffles)."""

    mode: Mode
    k: int
    cluster: LocalCluster
    sidecars: ShuffleSidecars
    label: str = ""  # the mode, and its decode grace where several are compared

    def __post_init__(self) -> None:
        self.label = self.label or self.mode.value

    @property
    def sidecars_at(self) -> dict[str, Endpoint]:
        """Where each instance's shuffle sidecar listens, by instance name."""
        return self.sidecars.endpoints

    def url(self, transport: str) -> str:
        front = self.cluster.frontend
        if transport == "http":
            return f"http://127.0.0.1:{front.http_port}"
        return f"127.0.0.1:{front.grpc_port}"

    def pids(self) -> list[int]:
        procs = [inst.process for inst in self.cluster.instances.values()]
        return [p.pid for p in procs if p is not None and p.returncode is None]


def _cluster(
    k: int,
    variant: tuple[str, Mode, str],
    plan: LatencyPlan,
    bundles: tuple[Path, Path],
    logs: Path,
) -> ModeCluster:
    base, parity = bundles
    label, mode, grace = variant
    model = ModelDeployment(
        MODEL,
        base,
        parity,
        k=k,
        mode=mode,
        data_instances=k * plan.groups,
        parity_instances=plan.groups,
        settings={"decode_grace": grace},
    )

    def configure(config: ContainerConfig) -> ContainerConfig:
        padded = replace(config, service_time_ms=plan.service_time_ms)
        return plan.contention.configure(padded)

    http = 0 if plan.transport == "http" else None  # 0: any free port
    deployment = Deployment((model,), grpc_port=0, http_port=http)
    logs_of = logs / f"k{k}-{_slug(label)}"
    cluster = LocalCluster(deployment, logs_of, configure, network=plan.network_spec)
    names = model.instance_names() if plan.contention.shuffle else []

    def place(name: str) -> tuple[list[str], str]:
        """A sidecar on its instance's host (the network exists once the cluster started)."""
        if cluster.network is None:
            return [], "127.0.0.1"
        key = f"{MODEL}/{name}"
        return cluster.network.exec_prefix(key), cluster.network.host(key).address

    return ModeCluster(mode, k, cluster, ShuffleSidecars(names, place=place), label)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in label)


@contextlib.asynccontextmanager
async def clusters_for(
    k: int, plan: LatencyPlan, bundles: tuple[Path, Path], logs: Path
) -> AsyncIterator[list[ModeCluster]]:
    """Every mode's cluster for ``k``, all up together with their sidecars; stopped in
    reverse on exit."""
    async with contextlib.AsyncExitStack() as stack:
        running = []
        for variant in plan.variants():
            mc = _cluster(k, variant, plan, bundles, logs)
            await stack.enter_async_context(mc.cluster)
            await stack.enter_async_context(mc.sidecars)
            running.append(mc)
        yield running


async def load_client(
    url: str, rate: float, queries: int, warmup: int, seed: int, raw: Path, transport: str
) -> dict[str, Any]:
    """Run ``bench.loadgen`` in its own process; its JSON summary."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", "--url", url, "--model", MODEL,
        "--transport", transport,
        "--rate", str(rate), "--queries", str(queries), "--warmup", str(warmup),
        "--seed", str(seed), "--raw", str(raw), "--data", "digits",  # the demo's inputs
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled: the client must not outlive the run
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


async def run_point(
    mc: ModeCluster, plan: LatencyPlan, rate: float, repeat: int, raw_dir: Path
) -> dict[str, Any]:
    """One measured run of one mode at one rate, under the plan's contention."""
    seed = plan.seed + 1000 * repeat
    active = contention_for(mc, plan, seed)
    raw = raw_dir / f"k{mc.k}-{_slug(mc.label)}-r{rate:g}-{repeat}.json"
    began = time.perf_counter()
    hedges = frontend_counter(mc, "parm_hedges_total")
    served = frontend_counter(mc, INSTANCE_REQUESTS)
    answered = frontend_counter(mc, ANSWERS)
    active.start()
    lag = LoopLag()
    try:
        await asyncio.sleep(plan.settle_s)
        async with lag.watching():
            url = mc.url(plan.transport)
            result = await load_client(
                url, rate, plan.queries, plan.warmup, seed, raw, plan.transport
            )
    finally:
        await active.stop()
    result.update(
        mode=mc.label,
        k=mc.k,
        repeat=repeat,
        contention=plan.contention.text,
        network=plan.network,
        injected=active.stats(),
        instances=plan.instances(mc.k),
        raw=raw.name,
        wall_s=time.perf_counter() - began,
        load=rate / plan.capacity(mc.k),
        **lag.summary(),
    )
    queries = max(1, plan.queries + plan.warmup)
    # the extra load each mode costs: instance requests answered per query answered,
    # beyond one (per query answered: refused or lost queries cost no instance time)
    requests = frontend_counter(mc, INSTANCE_REQUESTS) - served
    result["extra_load"] = requests / max(1.0, frontend_counter(mc, ANSWERS) - answered) - 1
    if mc.mode is Mode.HEDGE:  # backups queued per query (some cancelled while queued)
        backups = frontend_counter(mc, "parm_hedges_total") - hedges
        result["hedges_per_query"] = backups / queries
    return result


#: per instance request answered (data, parity, replica or backup): one histogram count
INSTANCE_REQUESTS = "parm_instance_service_seconds_count"
#: per query answered with an output, whatever its source
ANSWERS = "parm_answers_total"


def contention_for(mc: ModeCluster, plan: LatencyPlan, seed: int) -> ActiveContention:
    """The plan's contention on ``mc``: its processes, sidecars and (netns) hosts."""
    network = mc.cluster.network
    hosts = [inst.key for inst in mc.cluster.instances.values()]
    sidecars = list(mc.sidecars_at.values())
    return ActiveContention(plan.injected, mc.pids(), sidecars, seed, network, hosts)


def frontend_counter(mc: ModeCluster, name: str) -> float:
    """A counter of the (in-process) frontend's metrics, summed over its labels."""
    text = mc.cluster.frontend.metrics.render()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


async def run_plan(
    plan: LatencyPlan, bundles: dict[int, tuple[Path, Path]], out_dir: Path, logs: Path
) -> list[dict[str, Any]]:
    """Every run of the plan, in order; one result per (k, rate, repeat, mode)."""
    raw_dir = out_dir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for k in plan.ks:
        async with clusters_for(k, plan, bundles[k], logs) as running:
            for rate in plan.rates_for(k):
                for repeat in range(plan.repeats):
                    for mc in running:
                        row = await run_point(mc, plan, rate, repeat, raw_dir)
                        _progress(row)
                        rows.append(row)
                        await asyncio.sleep(0.5)  # let queues drain between runs
    return rows


def _progress(row: dict[str, Any]) -> None:
    print(
        f"  k={row['k']} {row['mode']:<16} rate={row['rate']:g} rep={row['repeat']}: "
        f"p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} p99.9 {row['p999_ms']:.2f} ms "
        f"sources {row['sources']}, extra load {row['extra_load']:.1%} "
        f"({row['wall_s']:.0f} s; frontend: loop lag max "
        f"{row.get('loop_lag_max_ms', 0):.0f} ms, GC max {row.get('frontend_gc_max_ms', 0):.0f} "
        f"ms, {row.get('frontend_cpu_cores', 0):.2f} cores)",
        flush=True,
    )


def plan_from_options(quick: bool, **overrides: Any) -> LatencyPlan:
    """The quick or full plan with the command line's overrides (None: keep)."""
    changes = {key: value for key, value in overrides.items() if value is not None}
    if changes.get("network") == "netns":
        plan = QUICK_NETNS if quick else NETNS
    else:
        plan = QUICK if quick else LatencyPlan()
    if "rates" in changes and "loads" not in changes:
        changes["loads"] = ()  # rates given: they are what runs
    if "contention" in changes:
        changes["contention"] = parse_contention(changes["contention"])
    if "modes" in changes:
        changes["modes"] = tuple(Mode(m) for m in changes["modes"])
    if "decode_graces" in changes:
        changes["decode_graces"] = tuple(str(g) for g in changes["decode_graces"])
    return replace(plan, **changes)


def bundle_accuracy(bundles: dict[int, tuple[Path, Path]]) -> dict[str, dict[str, float]]:
    """A_a and A_d of each k's parity bundle, where its manifest carries them (by k)."""
    out = {}
    for k, (_, parity) in bundles.items():
        metrics = read_manifest(parity).metrics
        if "A_a" in metrics and "A_d" in metrics:
            out[str(k)] = {"A_a": float(metrics["A_a"]), "A_d": float(metrics["A_d"])}
    return out


def demo_bundles(ks: Sequence[int], home: Path) -> dict[int, tuple[Path, Path]]:
    """The demo bundles for each k, trained (or found) by a child process.

    Not in this process: importing torch here would put a quarter of a million objects
    on the heap of the process that runs the frontend, and every full garbage
    collection would then stall it for hundreds of milliseconds (measured: 0.5 s).
    """
    code = (
        "import json, sys; from pathlib import Path; from train.demo import ensure_demo\n"
        "out = {k: [str(p) for p in (d.base_dir, d.parity_dir)] for k in map(int, sys.argv[2:])"
        " for d in [ensure_demo(k, Path(sys.argv[1]))]}\n"
        "print(json.dumps(out))"
    )
    args = [sys.executable, "-c", code, str(home / "demo"), *map(str, ks)]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    paths = json.loads(done.stdout.strip().splitlines()[-1])
    return {int(k): (Path(v[0]), Path(v[1])) for k, v in paths.items()}


@contextlib.contextmanager
def _cancelled_by_signals() -> Iterator[None]:
    """SIGINT/SIGTERM cancel the run, so every injector stops (no instance is left
    SIGSTOPped, no hog spinning) and the clusters shut down in order."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, task.cancel)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run_latency(
    plan: LatencyPlan, out_dir: Path, results_md: Path | None, home: Path, command: str
) -> int:
    """Run the plan; write results.json, results.csv and PNGs to ``out_dir``; report."""
    from bench import plots
    from bench.report import aggregate, machine, markdown, publish, write_outputs

    bundles = demo_bundles(plan.ks, home)
    print(f"contention: {plan.injected.describe()}", flush=True)
    try:
        with _cancelled_by_signals():
            rows = await run_plan(plan, bundles, out_dir, home / "logs")
    except asyncio.CancelledError:
        print("interrupted: injectors stopped, clusters shut down", file=sys.stderr)
        return 130
    runs = aggregate(rows)
    meta = {**plan.describe(), "machine": machine(), "command": command}
    meta["accuracy"] = bundle_accuracy(bundles)
    write_outputs(out_dir, runs, rows, meta)
    label = plan.contention.text
    pngs = plots.cdf_plots(rows, out_dir / "raw", out_dir, label)
    pngs.append(plots.tail_vs_rate(runs, out_dir, label))
    if plan.loads:
        pngs.append(plots.tail_vs_load(runs, out_dir, label))
    pngs.append(plots.extra_load(runs, out_dir, label))
    where = "netns hosts" if plan.network == "netns" else "local cluster"
    text = markdown(f"Tail latency, {where}", command, meta, runs)
    publish(text, results_md)
    print(f"wrote {out_dir / 'results.json'}, results.csv and {len(pngs)} plots", flush=True)
    return 0
