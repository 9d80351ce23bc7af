import pytest

from synthllm.config import Config, ConfigError, load_config


def test_defaults_are_valid_and_documented():
    config = Config()
    assert config.level1.questions_per_document == 5 and config.level3.epochs == 5
    assert config.level3.reference_documents == 2 and config.filter.threshold == 6.5

    def undocumented(model, prefix=""):
        from pydantic import BaseModel

        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from undocumented(field.annotation, prefix + name + ".")
            elif not field.description:
                yield prefix + name

    assert list(undocumented(Config)) == []


def test_bad_field_is_one_line_with_file_and_field(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("level1:\n  questions_per_document: 9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: level1.questions_per_document:") and "\n" not in message


def test_unknown_key_and_bad_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("levl1: {}\n")
    with pytest.raises(ConfigError, match="levl1"):
        load_config(path)
    path.write_text("input:\n  path: [unclosed\n")
    with pytest.raises(ConfigError, match=r"run.yaml:\d+: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "run.yaml"
    path.write_text("input:\n  path: corpus.jsonl\n")
    assert load_config(path).input.path == tmp_path / "sub" / "corpus.jsonl"


def test_levels_need_concepts():
    with pytest.raises(ConfigError, match="need concepts"):
        load_config(None, {"concepts": {"enabled": False}})
    load_config(None, {"concepts": {"enabled": False}, "level2": {"enabled": False}, "level3": {"enabled": False}})


def test_min_questions_cannot_exceed_the_questions_asked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="min_questions_per_document"):
        Config.model_validate({"level1": {"questions_per_document": 2, "min_questions_per_document": 3}})
