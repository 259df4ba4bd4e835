"""CI self-check: for every registered family, transformers' own resolver (get_relative_import_files, check_imports)
finds every file of the flattened remote code, so an import that would break an export fails here; and the checker
itself catches the mistakes it exists for. Also the export_hub command line."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from export_fixtures import tiny_heads, tokenizer_of
from transformers.dynamic_module_utils import get_relative_import_files

from flagai_hf.auto_registration import AUTO_MODELS
from flagai_hf.export import ExportError, check_remote_code, export_for_hub, model_auto_map, tokenizer_auto_map
from flagai_hf.export.hub_folder import family_heads, family_tokenizers
from flagai_hf.export.remote_code import flattened_source, needed_files, write_flattened

FAMILIES = sorted({config for _, config, _ in AUTO_MODELS}, key=lambda config: config.model_type)
CLI = Path(__file__).resolve().parents[2] / "conversion" / "export_hub.py"


CASES = [(config, tokenizer) for config in FAMILIES for tokenizer in family_tokenizers(config)]


def code_only_folder(config_class, tokenizer_class, folder: Path) -> Path:
    """The remote-code part of an export, without weights: flattened sources plus the two auto_maps."""
    folder.mkdir()
    write_flattened([config_class, *family_heads(config_class).values(), tokenizer_class], folder)
    (folder / "config.json").write_text(json.dumps({"auto_map": model_auto_map(config_class)}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": tokenizer_auto_map(tokenizer_class)}))
    return folder


@pytest.mark.parametrize("config_class, tokenizer_class", CASES,
                         ids=[f"{config.model_type}-{tokenizer.__name__}" for config, tokenizer in CASES])
def test_every_family_flattens_into_files_transformers_resolves(tmp_path, config_class, tokenizer_class):
    folder = code_only_folder(config_class, tokenizer_class, tmp_path / config_class.model_type)
    reached = check_remote_code(folder)
    assert reached == sorted(p.name for p in folder.glob("*.py"))
    for name in reached:  # only flat sibling imports are left
        text = (folder / name).read_text()
        assert not re.search(r"^\s*from\s+\.\.", text, flags=re.MULTILINE), name
        assert not re.search(r"^\s*from\s+\.\w+\.\w+", text, flags=re.MULTILINE), name
    modeling = folder / model_auto_map(config_class)["AutoModel"].split(".")[0]
    found = {Path(p).name for p in get_relative_import_files(str(modeling) + ".py")}
    assert "flagai_api.py" in found and all((folder / name).is_file() for name in found)


def test_cross_family_tokenizer_files_are_exported(tmp_path):
    """GLM's English and T5's Chinese tokenizers build on bert's tokenization file: it travels with them."""
    for config_class in FAMILIES:
        names = [path.name for path in needed_files(family_tokenizers(config_class))]
        if config_class.model_type in ("flagai_glm", "flagai_t5"):
            assert "tokenization_flagai_bert.py" in names


def test_checker_catches_broken_imports(tmp_path):
    good = code_only_folder(*CASES[0], tmp_path / "good")
    modeling = next(good.glob("modeling_*.py"))

    nested = tmp_path / "nested"
    shutil.copytree(good, nested)
    (nested / modeling.name).write_text(modeling.read_text() + "\nfrom ..modules.mlp import MLP\n")
    with pytest.raises(ExportError, match=r"\.modules\.mlp\.py is imported .* but not in"):
        check_remote_code(nested)

    absolute = tmp_path / "absolute"
    shutil.copytree(good, absolute)
    (absolute / modeling.name).write_text(modeling.read_text() + "\nfrom flagai_hf.loading import FAMILIES\n")
    with pytest.raises(ExportError, match="imports flagai_hf outside a try: block"):
        check_remote_code(absolute)

    missing = tmp_path / "missing"
    shutil.copytree(good, missing)
    (missing / "mlp.py").unlink()
    with pytest.raises(ExportError, match="mlp.py is imported"):
        check_remote_code(missing)

    orphan = tmp_path / "orphan"
    shutil.copytree(good, orphan)
    (orphan / "extra.py").write_text("x = 1\n")
    with pytest.raises(ExportError, match="extra.py not reached"):
        check_remote_code(orphan)

    wrong_class = tmp_path / "wrong_class"
    shutil.copytree(good, wrong_class)
    config = json.loads((wrong_class / "config.json").read_text())
    config["auto_map"]["AutoModel"] = modeling.stem + ".NoSuchModel"
    (wrong_class / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="defines no NoSuchModel"):
        check_remote_code(wrong_class)


def test_flattening_rewrites_every_package_import():
    for config_class in FAMILIES:
        for path in needed_files([config_class, *family_heads(config_class).values()]):
            text = flattened_source(path)
            assert not re.search(r"^\s*from\s+\.(\.|\w+\.)", text, flags=re.MULTILINE), path
            assert len(re.findall(r"^\s*from\s+\.\w+\s+import", text, flags=re.MULTILINE)) == \
                len(re.findall(r"^\s*from\s+\.+[\w.]+\s+import", path.read_text(), flags=re.MULTILINE))


def test_export_refuses_a_used_folder_and_unregistered_models(tmp_path):
    tokenizer = tokenizer_of("gpt2")
    model = next(iter(tiny_heads("gpt2", tokenizer).values()))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("keep")
    with pytest.raises(ExportError, match="is not empty"):
        export_for_hub(model, tmp_path / "used")
    folder = export_for_hub(model, tmp_path / "used", overwrite=True)
    assert not (folder / "notes.txt").exists() and (folder / "README.md").is_file()
    assert "text-generation" in (folder / "README.md").read_text()

    class Unregistered(type(model.config)):
        model_type = "flagai_unregistered"

    model.config.__class__ = Unregistered
    with pytest.raises(ExportError, match="no family registers"):
        export_for_hub(model, tmp_path / "other")


def load_cli():
    spec = importlib.util.spec_from_file_location("export_hub_cli", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_exports_a_native_folder_into_a_hub_cache(tmp_path, capsys):
    tokenizer = tokenizer_of("glm")
    model = tiny_heads("glm", tokenizer)["AutoModelForSeq2SeqLM"]
    source = tmp_path / "native"
    model.save_pretrained(source)
    tokenizer.save_pretrained(source)
    cli = load_cli()
    cli.main([str(source), str(tmp_path / "out"), "--repo-id", "BAAI/GLM-large-ch",
              "--hf-cache", str(tmp_path / "hub")])
    printed = capsys.readouterr().out
    assert "GLMForConditionalGeneration, tokenizer GLMChineseTokenizer" in printed
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer_config.json",
                 "cog-pretrain.model", "README.md", "modeling_flagai_glm.py", "attention.py"):
        assert (out / name).is_file(), name
    assert "BAAI/GLM-large-ch" in (out / "README.md").read_text()
    repo = tmp_path / "hub" / "models--BAAI--GLM-large-ch"
    assert (repo / "snapshots" / (repo / "refs" / "main").read_text() / "modeling_flagai_glm.py").is_file()

    with pytest.raises(SystemExit):
        cli.main([str(source), str(tmp_path / "out2"), "--hf-cache", str(tmp_path / "hub")])  # no --repo-id
    with pytest.raises(SystemExit, match="not of the form ORG/NAME"):
        cli.main([str(source), str(tmp_path / "out3"), "--repo-id", "no-org", "--mirror", str(tmp_path / "m")])
    with pytest.raises(SystemExit, match="Unknown --model-class"):
        cli.main([str(source), str(tmp_path / "out4"), "--model-class", "NoSuchClass"])
