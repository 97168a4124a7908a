"""pvagpu-launch: settings and TOML files, the children's command lines, the
aggregated table, and the launcher run as a user runs it (a subprocess on
free loopback ports), stopped with SIGINT/SIGTERM, with no child left.
"""
import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from conftest import wait_for
from pvagpu.cli.launch import build_parser, main
from pvagpu.consumer import Consumer
from pvagpu.errors import ConfigurationError
from pvagpu.launch import gpus as gpus_module, settings as settings_module
from pvagpu.launch.plan import consumer_specs, gpu_list, monitored_channels, plan
from pvagpu.launch.settings import LaunchSettings, read_toml, resolve, resolve_nodes
from pvagpu.launch.status_watch import ChannelState
from pvagpu.launch.table import COLUMNS, consumer_rows, gpu_cells, render, total_row

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "launch_4x4.toml"


# --------------------------------------------------------------------------
# settings and TOML files
# --------------------------------------------------------------------------

def _toml(tmp_path, text):
    path = tmp_path / "launch.toml"
    path.write_text(text)
    return str(path)


def test_flags_win_over_the_host_table_over_the_file(tmp_path):
    file = read_toml(_toml(tmp_path, """
        gpus = "0,1"
        distributor-group = "file"
        processor_args = {threshold = 3}
        [hosts.a]
        distributor-group = "host"
        [hosts.b]
    """))
    s = resolve({}, file, hostname="a")
    assert (s.node, s.n_nodes, s.gpus, s.distributor_group) == (1, 2, "0,1", "host")
    assert s.processor_args == {"threshold": 3}
    s = resolve({"distributor_group": "flag"}, file, hostname="b")
    assert (s.node, s.distributor_group) == (2, "flag")
    assert resolve({"host": "b"}, file, hostname="a").node == 2


@pytest.mark.parametrize("text, message", [
    ('gpu = "0"', "unknown key 'gpu'"),
    ("consumers = 'many'", "consumers: expected an integer"),
    ("gpus = '0,x'", "comma list of distinct device numbers"),
    ("processor-args = '{bad'", "not JSON"),
    ("runtime = true", "runtime: expected a number"),
    ("monitor = ['a']", "unknown key 'monitor'"),
    ("n-workers = 2\nconsumers = 3", "ONE consumer with workers"),
    ("[hosts.x]\nmirror = 5", "mirror: expected a string"),
    ("hosts = 3", "hosts must be tables"),
    ("gpus = ", "not valid TOML"),
])
def test_bad_configuration_files_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve({}, read_toml(_toml(tmp_path, text)), hostname="x")


def test_a_host_without_a_table_and_a_missing_file_are_errors(tmp_path):
    file = read_toml(_toml(tmp_path, "[hosts.a]\n[hosts.b]\n"))
    with pytest.raises(ConfigurationError, match=r"this host 'c' has no \[hosts.c\] table"):
        resolve({}, file, hostname="c")
    with pytest.raises(ConfigurationError, match="does not exist|No such file"):
        read_toml(str(tmp_path / "missing.toml"))


def test_python_3_10_without_tomli_gets_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tomllib", None)   # import fails as on Python 3.10
    monkeypatch.setitem(sys.modules, "tomli", None)
    with pytest.raises(ConfigurationError, match="Python >= 3.11 .*tomli"):
        settings_module.read_toml(_toml(tmp_path, "gpus = 'none'"))


def test_the_4x4_example_spreads_16_gpus_over_4_nodes():
    file = read_toml(str(EXAMPLE))
    ids, commands = [], {}
    for host in file["hosts"]:
        s = resolve({"host": host}, file)
        specs = plan(s, gpu_list(s), resolve_nodes({}, file), path=os.path.dirname(sys.executable))
        commands[host] = specs
        consumers = [c for c in specs if c.role == "consumer"]
        assert [c.gpu for c in consumers] == ["0", "1", "2", "3"]
        for c in consumers:
            argv = c.argv
            assert argv[argv.index("-oo") + 1] == "16"          # 16 consumers share the group
            assert argv[argv.index("-dg") + 1] == file["distributor-group"]
            assert argv[argv.index("-ic") + 1] == file["input-channel"]
            assert argv[argv.index("--gpu") + 1] == c.gpu
        ids += [c.consumer_id for c in consumers]
    assert ids == list(range(1, 17))
    first = list(file["hosts"])[0]
    assert [c.name for c in commands[first] if c.role == "source"] == ["mirror"]
    assert all(c.role == "consumer" for host in list(file["hosts"])[1:] for c in commands[host])
    assert monitored_channels(resolve_nodes({"monitor": []}, file)) == [
        f"{file['name']}:{i}:status" for i in range(1, 17)]


# --------------------------------------------------------------------------
# command lines
# --------------------------------------------------------------------------

def _argv_value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_one_consumer_per_gpu_workers_and_cpu_consumers():
    per_gpu = consumer_specs(LaunchSettings(input_channel="m", gpus="0,1", n_nodes=2, node=2,
                                            processor_class="pvagpu.processors:FrameCounter",
                                            processor_args={"publish": False}), ["0", "1"], 2)
    assert [(s.consumer_id, s.gpu, s.status_channel) for s in per_gpu] == [
        (3, "0", "pvagpu:3:status"), (4, "1", "pvagpu:4:status")]
    argv = per_gpu[0].argv
    assert _argv_value(argv, "-oo") == "4" and _argv_value(argv, "--gpu") == "0"
    assert json.loads(_argv_value(argv, "-pa")) == {"publish": False}
    assert _argv_value(argv, "-dpn") == "pydistributor" and _argv_value(argv, "-dt") == "uniqueId"

    workers = consumer_specs(LaunchSettings(input_channel="m", n_workers=2,
                                            distributor_plugin_name="distributor"), ["0", "1"])
    assert len(workers) == 1
    argv = workers[0].argv
    assert _argv_value(argv, "--n-workers") == "2" and _argv_value(argv, "--gpus") == "0,1"
    assert "--gpu" not in argv and _argv_value(argv, "-dpn") == "distributor"

    cpu = consumer_specs(LaunchSettings(input_channel="m", gpus="none", consumers=3,
                                        no_distributor=True), gpu_list(LaunchSettings(gpus="none")))
    assert [_argv_value(s.argv, "--gpu") for s in cpu] == ["none"] * 3
    assert "-dg" not in cpu[0].argv and "-oo" not in cpu[0].argv
    shared = consumer_specs(LaunchSettings(input_channel="m", consumers=4), ["0", "1"])
    assert [s.gpu for s in shared] == ["0", "1", "0", "1"]


def test_sim_and_mirror_command_lines():
    s = resolve({"sim": "-cn sim:image -fps 50", "mirror": "", "gpus": "none"})
    specs = plan(s, [])
    assert [c.name for c in specs] == ["sim", "mirror", "consumer 1"]
    assert specs[0].argv[-4:] == ["-cn", "sim:image", "-fps", "50"]
    assert specs[1].argv[1:] == ["-cm", "(sim:image:mirror,sim:image,pva,100)"]
    assert _argv_value(specs[2].argv, "-ic") == "sim:image:mirror"
    with pytest.raises(ConfigurationError, match="--mirror without a channel"):
        plan(resolve({"mirror": ""}), [])
    with pytest.raises(ConfigurationError, match="cannot take a channel name"):
        plan(resolve({"mirror": "a,b"}), [])


def test_a_missing_mirror_server_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert main(["--mirror", "det:image", "--gpus", "none", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "pvapy-mirror-server was not found" in err and "pvagpu[distributor]" in err


def test_visible_gpus_follow_cuda_visible_devices_and_need_a_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,-1,4")   # CUDA stops at -1
    assert gpus_module.visible_gpus() == [0, 1]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setitem(sys.modules, "pynvml", None)          # no NVML, no nvidia-smi
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus_module.visible_gpus() == []
    probe = gpus_module.GpuProbe()
    assert not probe.available and probe.sample("0") == {"memUsed": None, "memTotal": None,
                                                         "util": None}
    assert gpu_list(LaunchSettings(gpus="auto"), gpus_module.visible_gpus()) == []


def test_help_teaches_with_an_example_per_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "pvagpu-launch -c examples/launch_4x4.toml" in text and "--monitor" in text
    for action in build_parser()._actions:
        if action.option_strings and action.nargs != 0 and action.dest != "help":
            assert "Example:" in action.help, action.dest


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------

def _status(cid, processed, t, **extra):
    stats = {"consumerId": cid, "objectTime": t,
             "receiverStats": {"nReceived": processed + 1, "nErrors": 1, "nOverruns": 2,
                               "connected": True},
             "processorStats": {"nProcessed": processed, "nMissed": 3, "nErrors": 4,
                                "processedRate": 7.0},
             "queueStats": {"nQueued": 5, "maxLength": 64}}
    stats.update(extra)
    return stats


def test_table_rows_rates_rings_workers_and_total():
    first = ChannelState("c:1:status", stats=_status(1, 100, 10.0), connected=True)
    second = ChannelState("c:2:status", stats=_status(2, 60, 11.0, userStats={
        "gpuDevice": "cuda:1", "ringOccupancy": 2, "ringSlots": 4}),
        previous=_status(2, 40, 10.0), connected=True)
    workers = ChannelState("c:3:status", connected=True, stats=_status(3, 30, 5.0, workerStats={
        "worker1": {"nProcessed": 10, "processedRate": 2.5, "gpu": "0"},
        "worker2": {"nProcessed": 20, "nMissed": 1}}))
    silent = ChannelState("c:4:status")
    rows = consumer_rows([first, second, workers, silent],
                         {"c:1:status": {"label": "consumer 1", "gpu": "0", "exit": None},
                          "c:4:status": {"label": "consumer 4", "gpu": None, "exit": "exit 2"}},
                         {"0": {"memUsed": 2 * 2**30, "memTotal": 80 * 2**30, "util": 37}})
    by = {r.label: r for r in rows}
    assert by["consumer 1"].fps == 7.0 and by["consumer 1"].ring == "5/64"
    assert (by["consumer 1"].gpu_mem, by["consumer 1"].util) == ("2.0/80.0 GiB", "37%")
    assert by["consumer 2"].fps == 20.0                      # (60 - 40) / (11 - 10)
    assert by["consumer 2"].ring == "2/4" and by["consumer 2"].gpu == "cuda:1"
    assert by["consumer 2"].gpu_mem == "-" and by["consumer 2"].util == "-"   # no NVML sample
    assert by["consumer 2"].errors == 5 and by["consumer 2"].missed == 3
    assert by["  worker1"].processed == 10 and by["  worker1"].gpu == "0"
    assert by["  worker2"].missed == 1
    assert by["consumer 4"].state == "exit 2" and by["consumer 4"].processed is None
    total = total_row(rows)
    assert total.processed == 190 and total.state == "3/4 ok"    # workers are parts of 3
    text = render("title", rows, ["mirror (pid 1) running"], ["12:00:00 sim exited"], now=0.0)
    lines = text.splitlines()
    assert lines[2].split()[:3] == ["consumer", "gpu", "state"]
    assert any(line.startswith("total") and " 190 " in line for line in lines)
    assert "mirror (pid 1) running" in lines and "  12:00:00 sim exited" in lines
    assert gpu_cells(None) == ("-", "-")


# --------------------------------------------------------------------------
# the launcher, run as a user runs it
# --------------------------------------------------------------------------

def _cells(line):
    cells, pos = {}, 0
    for name, width, _ in COLUMNS:
        cells[name] = line[pos:pos + width].strip()
        pos += width + 1
    return cells


class Output:
    """The launcher's output, read as it comes; its tables parsed."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self):
        return "\n".join(self.lines)

    def last_table(self):
        """{label: cells} of the last complete table block."""
        starts = [i for i, line in enumerate(self.lines) if line.startswith("pvagpu-launch ")
                  and "runtime" in line]
        if not starts:
            return {}
        block = self.lines[starts[-1]:]
        rows = {}
        for line in block[3:]:
            if not line:
                break
            cells = _cells(line)
            rows[cells["consumer"]] = cells
        return rows if "total" in rows else {}

    def pids(self):
        return [int(line.split("(pid ")[1].split(")")[0]) for line in self.lines
                if line.startswith("started ")]


def _launch(processes, *args):
    proc = processes.python("-m", "pvagpu.cli.launch", *args)
    return proc, Output(proc)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.pva
@pytest.mark.peer
def test_launcher_mirrors_a_source_for_three_consumers_and_stops_them(processes, tmp_path):
    from test_mirror_distributor import FrameSource
    source = FrameSource("det:src")
    try:
        proc, out = _launch(processes, "--mirror", "det:src", "-ic", "det:mirror",
                            "--gpus", "none", "--consumers", "3", "-pc",
                            "pvagpu.processors:FrameCounter", "-pa", '{"publish": false}',
                            "-rp", "0.3", "-dc", "--log-dir", str(tmp_path), "--stop-timeout", "5")
        wait_for(lambda: [r["state"] for k, r in out.last_table().items() if k != "total"]
                 == ["ok"] * 3, timeout=40, message=f"3 consumers connected:\n{out.text()}")
        source.post(60, interval=0.003)
        wait_for(lambda: out.last_table().get("total", {}).get("processed") == "60",
                 timeout=20, message=f"60 frames in the table:\n{out.text()}")
        table = out.last_table()
        for cid in (1, 2, 3):
            row = table[f"consumer {cid}"]
            assert row["processed"] == "20" and row["missed"] == "0" and row["errors"] == "0"
            assert row["gpu"] == "-" and row["gpu mem"] == "-" and row["util"] == "-"
        assert table["total"]["state"] == "3/3 ok"
        pids = out.pids()
        assert len(pids) == 4                                   # mirror + 3 consumers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
        out.thread.join(timeout=5)
    finally:
        source.close()
    text = out.text()
    assert "pvagpu-launch: 3 consumers: processed 60, missed 0, errors 0" in text
    for cid in (1, 2, 3):
        assert f"consumer {cid} det:mirror: received 21, processed 20, missed 0" in text
    assert all(_gone(pid) for pid in pids)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "consumer_1.log", "consumer_2.log", "consumer_3.log", "mirror.log"]


@pytest.mark.pva
def test_launcher_reports_a_child_that_exits_and_stops_on_sigterm(processes, tmp_path):
    proc, out = _launch(processes, "--sim=-cn sim:x -nx 16 -ny 8 -np 5 -fps 20 -std 2 -shd 0",
                        "--gpus", "none", "-rp", "0.3", "-dc", "--log-dir", str(tmp_path))
    wait_for(lambda: "sim (pid" in out.text() and "exited with code 0" in out.text(),
             timeout=40, message=f"the simulator's exit reported:\n{out.text()}")
    assert "consumer 1" in out.last_table()
    pids = out.pids()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    out.thread.join(timeout=5)
    assert "pvagpu-launch: 1 consumer:" in out.text()
    assert all(_gone(pid) for pid in pids)


@pytest.mark.pva
def test_launcher_reports_a_failing_consumer_and_stops(processes, tmp_path):
    proc, out = _launch(processes, "-ic", "nothing:here", "--gpus", "none", "--consumers", "2",
                        "-pc", "no_such_module:Nothing", "-rp", "0.3", "-dc",
                        "--log-dir", str(tmp_path))
    assert proc.wait(timeout=60) == 1
    out.thread.join(timeout=5)
    text = out.text()
    assert "consumer 1 (pid" in text and "exited with code 2" in text
    assert "no_such_module" in text                        # the consumer's own error line
    assert "no consumer left: stopping" in text
    assert all(_gone(pid) for pid in out.pids())


@pytest.mark.pva
def test_monitor_shows_a_running_consumers_status_channel(processes, pva_env):
    from test_mirror_distributor import FrameSource
    source = FrameSource("mon:image")
    consumer = Consumer("mon:image", None, consumer_id=7, status_channel="mon:7:status")
    try:
        consumer.start()
        wait_for(lambda: consumer.receiver.connected, timeout=20, message="consumer connected")
        source.post(12)
        wait_for(lambda: consumer.stats()["processorStats"]["nProcessed"] == 12, timeout=10,
                 message="12 frames processed")
        proc, out = _launch(processes, "--monitor", "mon:7:status", "-rt", "30", "-rp", "0.3",
                            "-dc")
        wait_for(lambda: out.last_table().get("consumer 7", {}).get("processed") == "12",
                 timeout=30, message=f"consumer 7 in the table:\n{out.text()}")
        row = out.last_table()["consumer 7"]
        assert row["state"] == "ok" and row["received"] == "13" and row["missed"] == "0"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        out.thread.join(timeout=5)
    finally:
        consumer.shutdown()
        source.close()
    assert "pvagpu-launch: 1 consumer: processed 12" in out.text()
    assert "started " not in out.text()                    # --monitor starts nothing
