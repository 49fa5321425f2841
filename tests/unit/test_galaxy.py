"""galaxy.yml says what the collection holds: its description names exactly the
registered platforms (so it grows with each one), each platform is a tag, and no
URL pretends to be the project's."""

import os
import re

import yaml

from ansible_collections.virtops.unified.plugins.module_utils import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def galaxy():
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def described_platforms(description):
    """The titles after "Platforms: ", separated by "; ", up to the final full stop."""
    assert description.count("Platforms: ") == 1, description
    listed = description.split("Platforms: ", 1)[1]
    assert listed.endswith("."), "the platform list ends the description: %r" % listed
    return listed[:-1].split("; ")


def test_the_description_names_exactly_the_registered_platforms():
    listed = described_platforms(galaxy()["description"])
    titles = [p.title for p in registry.platforms().values()]
    assert sorted(listed) == sorted(titles), (
        "galaxy.yml's description must list the title of every registered platform, and no other; "
        "listed: %s, registered: %s" % (listed, titles))
    assert len(listed) == len(set(listed))


def test_the_description_promises_no_platform_beyond_its_list():
    text = galaxy()["description"].split("Platforms: ", 1)[0]
    titles = " ".join(p.title for p in registry.platforms().values()).lower()
    # platforms the first description announced before they were there
    for word in ("Hyper-V", "PowerVM", "bare metal", "Redfish", "Proxmox", "Nutanix", "oVirt"):
        if word.lower() in text.lower():
            assert word.lower() in titles, "galaxy.yml's description names %s, which is no registered platform" % word


def test_every_registered_platform_is_a_tag_and_the_tags_are_valid():
    tags = galaxy()["tags"]
    for name in registry.platforms():
        assert name in tags, "galaxy.yml tags: add %s" % name
    assert len(tags) <= 20 and len(tags) == len(set(tags))
    for tag in tags:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", tag) and len(tag) <= 64, tag


def test_no_placeholder_url():
    meta = galaxy()
    for key in ("repository", "documentation", "homepage", "issues"):
        value = meta.get(key)
        if value is not None:
            fake = re.search(r"\.(invalid|example|test|localhost)\b|example\.", value)
            assert value.startswith("https://") and not fake, "%s: %s is no real URL" % (key, value)


def test_the_version_is_the_last_release_of_the_changelog():
    with open(os.path.join(ROOT, "changelogs", "changelog.yaml"), encoding="utf-8") as f:
        releases = yaml.safe_load(f)["releases"] or {}
    assert galaxy()["version"] in releases, "changelogs/changelog.yaml has no release %s" % galaxy()["version"]
