"""docs/deploy.md agrees with the deployment files: its loopwright.toml uses real settings
and says what the ConfigMap says, and it names every file of deploy/."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from loopwright.settings import read_config

from .conftest import DEPLOY, REPO

GUIDE = REPO / "docs" / "deploy.md"
TOML_BLOCK = re.compile(r"```toml[^\n]*\n(.*?)```", re.DOTALL)


def test_the_guides_loopwright_toml_is_valid_and_matches_the_config_map(tmp_path: Path) -> None:
    blocks = TOML_BLOCK.findall(GUIDE.read_text())
    assert blocks
    configmap = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())
    shipped = tmp_path / "shipped.toml"
    shipped.write_text(configmap["data"]["loopwright.toml"])
    expected = read_config(shipped)
    for index, block in enumerate(blocks):
        file = tmp_path / f"guide-{index}.toml"
        file.write_text(block)
        settings = read_config(file)  # unknown keys would raise
        for name in ("LOOPWRIGHT_STORE", "LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_SANDBOX"):
            assert settings[name] == expected[name], name


def test_the_guide_names_every_deployment_file() -> None:
    text = GUIDE.read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(DEPLOY)
            named = f"deploy/{relative}" in text or f"`{relative.name}`" in text
            assert named, f"docs/deploy.md does not mention {relative}"
