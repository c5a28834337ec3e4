"""Fast checks of the Flower engine's pieces, without processes: the wire format, the run and
node configs, the client executor's handling of bad replies (with a stub Grid), the
min-replies rule, and the `fedtune flower` commands (dry runs)."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from fedtune.config import ConfigError, from_dict, load_config
from fedtune.data.records import RecordError
from fedtune.protocol import ClientInstruction, ClientUpdate


@pytest.fixture()
def task_identity():
    """Flower needs a task identity to build Messages outside its runtime (private API, pinned flwr)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def _adapter(value=0.0):
    return {"layer.lora_A.weight": torch.full((2, 3), value), "layer.lora_B.weight": torch.full((3, 2), value)}


def test_wire_round_trip_keeps_tensors_fields_and_config():
    from fedtune.flower.wire import (
        array_bytes,
        decode_instruction,
        decode_update,
        encode_instruction,
        encode_update,
    )

    cfg = load_config(None, ["model.name=tiny-random", "federation.rounds=3"])
    ins = ClientInstruction(2, 1, 0.005, 4, config={"prox_mu": 0.1}, tensors={"server_control": _adapter(1.0)})
    content = encode_instruction(ins, _adapter(0.5), cfg, resumed_from=0)
    assert array_bytes(content) >= 2 * 12 * 4  # two adapters of 12 fp32 values each
    job = decode_instruction(content)
    got = job.instruction
    assert (got.client_id, got.round, got.lr, got.steps, got.config) == (2, 1, 0.005, 4, {"prox_mu": 0.1})
    assert torch.equal(got.tensors["server_control"]["layer.lora_A.weight"], torch.ones(2, 3))
    assert job.resumed_from == 0 and job.cfg == cfg
    assert all(torch.equal(job.start[k], v) for k, v in _adapter(0.5).items())
    update = ClientUpdate(2, _adapter(2.0), 17, {"loss": 1.5, "examples": 8, "note": "dropped"},
                          {"control_delta": _adapter(-1.0)})
    back = decode_update(encode_update(update))
    assert back.client_id == 2 and back.num_examples == 17 and back.metrics == {"loss": 1.5, "examples": 8}
    assert torch.equal(back.tensors["control_delta"]["layer.lora_B.weight"], torch.full((3, 2), -1.0))


def test_wire_packs_each_state_into_one_array_per_dtype_and_restores_it_exactly():
    from fedtune.flower.wire import decode_update, encode_update

    state = {"b.lora_B.weight": torch.arange(6, dtype=torch.float32).reshape(3, 2),
             "a.lora_A.weight": torch.randn(4, 5), "scale": torch.tensor(2.5),
             "half": torch.randn(2, 3).to(torch.bfloat16), "empty": torch.zeros(0, 4)}
    content = encode_update(ClientUpdate(0, state, 3, {"loss": 1.0, "examples": 2}))
    assert sorted(content.array_records["adapter"].keys()) == ["bfloat16", "float32"]
    back = decode_update(content).adapter
    assert list(back) == list(state)  # order kept
    for key, tensor in state.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key
    # Each decoded tensor owns its memory: pickled (as the resident trainer does) it costs its own
    # bytes, not the whole packed buffer once per tensor.
    many = {f"layer{i}": torch.randn(32, 32) for i in range(50)}
    decoded = decode_update(encode_update(ClientUpdate(0, many, 3, {"loss": 1.0, "examples": 2}))).adapter
    assert len(pickle.dumps(decoded)) < 2 * 50 * 32 * 32 * 4


def test_wire_rejects_malformed_content():
    from flwr.app import ConfigRecord, RecordDict

    from fedtune.flower.wire import WireError, decode_update, encode_update

    with pytest.raises(WireError, match="no ConfigRecord 'update'"):
        decode_update(RecordDict())
    content = encode_update(ClientUpdate(0, _adapter(), 3, {"loss": 1.0, "examples": 2}))
    content["update"] = ConfigRecord({"client-id": "zero", "num-examples": 3})
    with pytest.raises(WireError, match="'client-id' has type str"):
        decode_update(content)
    for layout, error in [('[["layer.lora_A.weight", "float32", [2, 3]]]', "values no tensor of the layout uses"),
                          ('[["x", "float32", [5, 5]]]', "tensor 'x' \\(float32, \\[5, 5\\]\\) is not in"),
                          ('[["x", "int8", [1]]]', "tensor 'x'"), ("{", "layout is not JSON")]:
        content = encode_update(ClientUpdate(0, _adapter(), 3, {"loss": 1.0, "examples": 2}))
        content["adapter.layout"] = ConfigRecord({"layout": layout})
        with pytest.raises(WireError, match=error):
            decode_update(content)


def test_app_settings_from_flower_run_config():
    from fedtune.flower.app_config import AppSettings

    s = AppSettings.from_run_config({"config": "recipes/demo.yaml", "set": "train.lr=5e-4; eval.every=0",
                                     "federation.num_clients": 2, "resume": True, "train.lr": 0.1,
                                     "min-replies": 1, "round-timeout": 0.0})
    assert s.resume and s.min_replies == 1 and s.round_timeout is None
    cfg = s.run_config()  # the packaged recipe, then its dotted keys, then `set` (which wins)
    assert cfg.name == "demo" and cfg.federation.num_clients == 2 and cfg.train.lr == 5e-4 and cfg.eval.every == 0
    with pytest.raises(ConfigError, match="unknown key 'rounds'"):
        AppSettings.from_run_config({"rounds": 3})
    with pytest.raises(ConfigError, match="not found"):
        AppSettings.from_run_config({"config": "nope.yaml"}).run_config()


def test_node_settings_and_data_file(tmp_path):
    from fedtune.flower.node_config import NodeConfigError, NodeSettings
    from fedtune.flower.node_data import file_records

    assert NodeSettings.from_node_config({"partition-id": 3, "num-partitions": 4}).client_id == 3
    node = NodeSettings.from_node_config({"client-id": 1, "data-file": str(tmp_path / "d.jsonl")})
    assert node.client_id == 1 and node.data_file == tmp_path / "d.jsonl" and not node.fault_nonfinite
    with pytest.raises(NodeConfigError, match="client-id=N"):
        NodeSettings.from_node_config({})
    cfg = from_dict({})
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (tmp_path / "d.jsonl").write_text(json.dumps(good) + "\n\n" + json.dumps({"messages": []}) + "\n")
    with pytest.raises(RecordError, match=r"d\.jsonl:3"):
        file_records(cfg, tmp_path / "d.jsonl")
    (tmp_path / "d.jsonl").write_text(json.dumps(good) + "\n")
    assert file_records(cfg, tmp_path / "d.jsonl")[0]["category"] == ""


def test_node_data_file_in_any_format_with_the_pipeline(tmp_path):
    """A site's file goes through the data layer: here an Alpaca CSV deduplicated, and a
    preference file for a DPO run."""
    from fedtune.flower.node_config import NodeConfigError
    from fedtune.flower.node_data import file_records

    (tmp_path / "site.csv").write_text("instruction,output\nAdd 2 and 3.,5\nadd 2  and 3.,5\nName a colour.,red\n")
    cfg = from_dict({"data": {"pipeline": [{"op": "exact_dedup"}]}})
    records = file_records(cfg, tmp_path / "site.csv")
    assert [r["messages"][1]["content"] for r in records] == ["5", "red"]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    dpo = from_dict({"train": {"objective": "dpo"}})
    assert file_records(dpo, pairs)[0]["chosen"] == "4"
    cfg = from_dict({"data": {"pipeline": [{"op": "length", "min": 1000}]}})
    with pytest.raises(NodeConfigError, match="no training record left"):
        file_records(cfg, tmp_path / "site.csv")


class StubGrid:
    """Answers each train message at once according to the destination node's behaviour."""

    def __init__(self, behaviours: dict[int, str]):
        self.behaviours = behaviours  # node id -> ok | error | wrong-client | malformed | silent
        self.replies = {}

    def get_node_ids(self):
        return list(self.behaviours)

    def push_messages(self, messages):
        from flwr.app import Error, Message, RecordDict

        from fedtune.flower.wire import decode_instruction, encode_update

        ids = []
        for n, msg in enumerate(messages):
            msg.metadata.__dict__["_message_id"] = mid = f"m{len(self.replies)}-{n}"
            ids.append(mid)
            behaviour = self.behaviours[msg.metadata.dst_node_id]
            if msg.metadata.message_type == "query.describe":
                from flwr.app import ConfigRecord

                self.replies[mid] = Message(RecordDict({"node": ConfigRecord(
                    {"client-id": msg.metadata.dst_node_id - 100})}), reply_to=msg)
            elif behaviour == "error":
                self.replies[mid] = Message(Error(code=2, reason="node_unavail"), reply_to=msg)
            elif behaviour == "malformed":
                self.replies[mid] = Message(RecordDict(), reply_to=msg)
            elif behaviour != "silent":
                job = decode_instruction(msg.content)
                cid = job.instruction.client_id + (1 if behaviour == "wrong-client" else 0)
                update = ClientUpdate(cid, job.start, 5, {"loss": 1.0, "examples": 4})
                self.replies[mid] = Message(encode_update(update), reply_to=msg)
        return ids

    def pull_messages(self, ids):
        return [self.replies[i] for i in ids if i in self.replies]


def test_flower_clients_name_failed_and_rejected_nodes(task_identity):
    from fedtune.flower.grid_clients import FlowerClients

    cfg = load_config(None, ["model.name=tiny-random", "federation.num_clients=5"])
    grid = StubGrid({100: "ok", 101: "error", 102: "wrong-client", 103: "malformed", 104: "silent"})
    clients = FlowerClients(grid, cfg, round_timeout=1.0, node_wait=0)
    clients.announce()  # questions out now, answers read at begin()
    clients.begin(0)
    work = [(ClientInstruction(c, 0, 0.01, 1), _adapter()) for c in range(5)]
    replies = clients.execute(0, work)
    assert [ins.client_id for ins, _ in replies.updates] == [0]
    assert "node 101" in replies.failed["1"] and "node_unavail" in replies.failed["1"]
    assert "no reply within 1 s" in replies.failed["4"]
    assert "replied for client 3" in replies.rejected["2"] and "malformed" in replies.rejected["3"]
    assert replies.bytes_down > 0 and replies.bytes_up > 0
    del grid.behaviours[100]  # node 100 goes offline: client 0 has no node any more
    assert clients.execute(1, work[:1]).failed == {"0": "no SuperNode is connected for this client"}


def test_min_replies_fails_a_round_with_a_clear_message(tmp_path):
    from fedtune.data.federated import FederatedData
    from fedtune.engine.rounds import ClientReplies, RoundFailed, RoundLoop
    from fedtune.engine.run_dir import RunDir
    from fedtune.engine.workspace import Workspace

    cfg = load_config(None, ["model.name=tiny-random"])
    ws = Workspace(model=None, tokenizer=SimpleNamespace(pad_token_id=0), data=FederatedData("sft", [], []),
                   train_tokens=[], test_tokens=[],
                   global_test_tokens=None, initial_adapter=_adapter())
    loop = RoundLoop(cfg, ws, RunDir(tmp_path), executor=None, min_replies=2)
    instructions = [ClientInstruction(c, 3, 0.01, 1) for c in range(3)]
    ok = ClientReplies(updates=[(instructions[0], None)], rejected={"1": "node 7: bad"}, failed={"2": "node 8: gone"})
    loop._require_replies(3, instructions, ok)  # one update and one rejected reply: 2 replies
    ok.rejected.clear()
    with pytest.raises(RoundFailed, match=r"round 3 failed: 1 of 3 sampled clients replied, 2 required.*"
                                          r"client 2: node 8: gone.*before any checkpoint"):
        loop._require_replies(3, instructions, ok)


def test_flower_cli_prints_offline_commands(tmp_path, monkeypatch):
    from fedtune.commands.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["flower", "superlink", "--insecure", "--port", "9999", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "flower-superlink --host 127.0.0.1 --port 9999 --disable-runtime-dependency-installation --insecure" \
        in res.output.replace("\n", "")
    assert 'address = "127.0.0.1:9999"' in (tmp_path / ".flwr" / "config.toml").read_text()
    res = runner.invoke(app, ["flower", "superlink", "--port", "9999"])
    assert res.exit_code != 0 and "--insecure" in res.output
    data = tmp_path / "site.jsonl"
    data.write_text("{}\n")
    res = runner.invoke(app, ["flower", "supernode", "--client-id", "3", "--data", str(data), "--insecure",
                              "--dry-run"])
    out = res.output.replace("\n", "")
    assert res.exit_code == 0 and f'client-id=3 data-file="{data}"' in out
    assert "-m fedtune.flower.deploy.resident_trainer --socket" in out and "trainer-socket=" in out
    res = runner.invoke(app, ["flower", "supernode", "--client-id", "3", "--insecure", "--per-message", "--dry-run"])
    assert res.exit_code == 0 and "resident_trainer" not in res.output and "trainer-socket" not in res.output
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cli\nmodel: {name: tiny-random}\nfederation: {num_clients: 3}\n")
    res = runner.invoke(app, ["flower", "run", str(cfg), "--set", "federation.rounds=2", "--dry-run"])
    out = res.output.replace("\n", "")
    assert res.exit_code == 0, res.output
    assert "flwr run" in out and "num-supernodes=3" in out and "federation.rounds=2" in out
    assert "client-resources-num-gpus=0.0" in out  # this machine runs the model on its CPU
    res = runner.invoke(app, ["flower", "run", str(cfg), "--gpus-per-client", "0.5", "--dry-run"])
    assert "client-resources-num-gpus=0.5" in res.output.replace("\n", "")
    assert (tmp_path / ".flwr" / "apps-src" / "c" / "fedtune.yaml").read_text() == cfg.read_text()


def test_offline_environment():
    from fedtune.flower.deploy.launch import flower_env

    env = flower_env(base={"PATH": "/usr/bin"})
    assert env["FLWR_TELEMETRY_ENABLED"] == "0" and env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1" and env["FLWR_HOME"].endswith(".flwr")


def test_a_long_lived_node_process_keeps_one_model_at_a_time():
    from fedtune.flower import node_runtime

    first = load_config(None, ["model.name=tiny-random", "model.adapter.r=4"])
    second = load_config(None, ["model.name=tiny-random", "model.adapter.r=8"])
    a = node_runtime.model_for(first)
    assert node_runtime.model_for(first) is a  # reused across rounds
    b = node_runtime.model_for(second)
    assert b is not a and list(node_runtime._MODELS.values()) == [b]
