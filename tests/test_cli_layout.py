"""The CLI's house rules (issue 18): small modules, and every data default from one setting ($OCCLUFACE_DATA)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from occluface.cli import app

CLI = Path(__file__).resolve().parents[1] / "occluface" / "cli"


def test_every_cli_module_is_under_500_lines():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in sorted(CLI.glob("*.py"))}
    assert {"__init__.py", "common.py", "operate.py", "research.py", "bench.py"} <= set(sizes)
    too_long = {name: n for name, n in sizes.items() if n >= 500}
    assert not too_long, f"split these CLI modules (500 lines at most): {too_long}"


def test_no_hard_coded_data_path_in_the_cli():
    """Data defaults come from occluface.settings.shared_data, not a Path literal per option."""
    offenders = [p.name for p in CLI.glob("*.py") if 'Path("../shared' in p.read_text(encoding="utf-8")]
    assert not offenders, offenders


def test_data_default_follows_occluface_data_set_after_import(tmp_path, monkeypatch):
    """The default is looked up when the command runs: OCCLUFACE_DATA set after `import occluface.cli` moves it."""
    root = tmp_path / "elsewhere"
    root.mkdir()
    monkeypatch.setenv("OCCLUFACE_DATA", str(root))
    res = CliRunner().invoke(app, ["bench", "baseline", "--out", str(tmp_path / "out")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"{root / 'yaleb'}: not a folder" in text and "Traceback" not in text


def test_data_default_without_the_setting_is_the_shared_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("OCCLUFACE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # ../shared/data/yaleb seen from here does not exist
    res = CliRunner().invoke(app, ["bench", "baseline", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert f"{Path('../shared/data/yaleb')}: not a folder" in " ".join(res.output.split())


def test_help_names_the_setting():
    res = CliRunner().invoke(app, ["bench", "baseline", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "$OCCLUFACE_DATA/yaleb" in res.output
