"""Command-line defaults come from the graph; a --preset that disagrees with the checkpoint is
refused; relative paths typed on the command line resolve against the current directory, those
in the shipped YAML against the package share folder; --episodes below 1 is refused."""
from __future__ import annotations

import json

import pytest

from motus_ros import paths
from motus_ros.cli import CliError
from motus_ros.cli import main as cli_main


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from motus_ros.motus.checkpoint import save_checkpoint
    from motus_ros.motus.config import preset
    from motus_ros.motus.model import build_model

    folder = tmp_path_factory.mktemp("ckpt") / "tiny_run"
    save_checkpoint(build_model(preset("tiny"), seed=3), folder)
    return folder


def eval_args(*argv):
    from motus_ros.commands.eval import build_parser

    return build_parser().parse_args(list(argv))


def test_eval_without_checkpoint_runs_the_sim_graphs_weights_and_says_so():
    from motus_ros.commands.eval import choose_weights
    from motus_ros.graph.spec import load_graph

    graph = load_graph("sim")
    args = eval_args()
    said = choose_weights(args)
    expected = paths.resolve(graph.parameter("policy", "checkpoint"))
    assert args.checkpoint == str(expected) and expected.is_dir()
    assert args.stats == str(paths.resolve(graph.parameter("policy", "stats")))
    assert args.preset == graph.parameter("policy", "preset") == "small"
    assert said.startswith(str(expected)) and "config/sim/policy.yaml" in said


def test_eval_empty_checkpoint_means_random_weights_of_the_preset():
    from motus_ros.commands.eval import choose_weights

    args = eval_args("--checkpoint", "", "--preset", "tiny")
    assert choose_weights(args) == "none: random weights of preset tiny (seed 1)"
    assert args.checkpoint == "" and args.preset == "tiny"


def test_eval_preset_that_disagrees_with_the_graphs_checkpoint_is_refused():
    from motus_ros.commands.eval import choose_weights

    with pytest.raises(CliError, match=r"--preset tiny: the checkpoint .*sim_transfer_cube was made from preset "
                                       r"'small'.*--checkpoint '' evaluates random weights"):
        choose_weights(eval_args("--preset", "tiny"))


def test_eval_relative_checkpoint_is_taken_from_the_current_directory(tmp_path, monkeypatch, tiny_checkpoint):
    from motus_ros.commands.eval import choose_weights

    monkeypatch.chdir(tiny_checkpoint.parent)
    args = eval_args("--checkpoint", tiny_checkpoint.name)
    assert choose_weights(args).startswith(f"{tiny_checkpoint} (preset tiny), from --checkpoint")
    assert args.checkpoint == str(tiny_checkpoint) and args.preset == "tiny"
    monkeypatch.chdir(tmp_path)                       # not there: named, and not looked up in the repository
    with pytest.raises(CliError, match=rf"--checkpoint {tmp_path / tiny_checkpoint.name}: no such file"):
        choose_weights(eval_args("--checkpoint", tiny_checkpoint.name))


@pytest.mark.parametrize("episodes", ["0", "-2"])
def test_eval_refuses_fewer_than_one_episode(tmp_path, capsys, episodes):
    assert cli_main(["eval", "--episodes", episodes, "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert f"--episodes: got {episodes}, expected >= 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_export_refuses_a_preset_that_disagrees_with_the_checkpoint(tmp_path, capsys, tiny_checkpoint):
    code = cli_main(["export", "onnx", "--checkpoint", str(tiny_checkpoint), "--preset", "small",
                     "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--preset small: the checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_export_takes_relative_paths_from_the_current_directory(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    from motus_ros.motus.backends.onnx_export import SIDECAR_FILE, Sidecar

    monkeypatch.chdir(tiny_checkpoint.parent)
    (tiny_checkpoint.parent / "my_stats.json").write_text((paths.models_dir() / "stats" / "sim.json").read_text())
    assert cli_main(["export", "onnx", "--checkpoint", tiny_checkpoint.name, "--stats", "my_stats.json",
                     "--out", "exported"]) == 0
    side = Sidecar.load(tiny_checkpoint.parent / "exported" / SIDECAR_FILE)
    assert side.data["checkpoint"] == str(tiny_checkpoint)
    assert side.data["stats"] == str(tiny_checkpoint.parent / "my_stats.json")
    assert side.data["preset"] == "tiny"                # the checkpoint's own, no --preset given
    assert json.loads(capsys.readouterr().out)["preset"] == "tiny"


def test_shipped_yaml_paths_resolve_against_the_share_folder_from_anywhere(tmp_path, monkeypatch):
    from motus_ros.graph.spec import load_graph

    monkeypatch.chdir(tmp_path)
    graph = load_graph("sim")
    assert graph.node("policy").parameters[0].is_relative_to(paths.share_root() / "config")
    assert paths.resolve("models/stats") == paths.share_root() / "models" / "stats"
    assert paths.from_cli("models/stats") == tmp_path / "models" / "stats"
    assert paths.from_cli("/abs/x") == paths.resolve("/abs/x") == paths.Path("/abs/x")
