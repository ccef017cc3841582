"""The shared attribute vocabulary: every dataset's declaration is valid, and the readings are the hand-checked ones."""

from __future__ import annotations

import pytest

from fairfacebench.data import CONCEPTS, UNMAPPED, Attribute, ConceptMap, check_vocabulary, concept_codes, concept_map
from fairfacebench.datasets.celeba import CelebA
from fairfacebench.datasets.fairface import FairFace
from fairfacebench.datasets.utkface import UTKFace, UTKFaceControlledBias
from fairfacebench.plugins import registry


def test_every_installed_dataset_declares_a_valid_vocabulary():
    for name, plugin in registry().datasets.items():
        check_vocabulary(name, plugin.attributes, plugin.vocabulary)


def test_fairface_seven_races_read_as_white_non_white_and_race4():
    # RACES = White, Black, Latino_Hispanic, East Asian, Southeast Asian, Indian, Middle Eastern:
    # only White is white (0); race4 joins East and Southeast Asian (2) and has no class for Latino_Hispanic and
    # Middle Eastern (UNMAPPED).
    plugin = FairFace()
    race = plugin.attributes["race"]
    assert concept_codes(plugin.vocabulary, "race_binary", race) == (0, 1, 1, 1, 1, 1, 1)
    assert concept_codes(plugin.vocabulary, "race4", race) == (0, 1, UNMAPPED, 2, 2, 3, UNMAPPED)
    assert concept_codes(plugin.vocabulary, "race4", plugin.attributes["race4"]) == (0, 1, 2, 3)


def test_fairface_age_bins_read_as_bands_and_children():
    # AGES = 0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59, 60-69, more than 70
    plugin = FairFace()
    age = plugin.attributes["age"]
    assert concept_codes(plugin.vocabulary, "age_band", age) == (0, 0, 0, 1, 1, 2, 2, 3, 3)
    assert concept_codes(plugin.vocabulary, "age_40", age) == (0, 0, 0, 0, 0, 1, 1, 1, 1)
    # child_adult = (adult 20+, child 0-10): 10-19 holds both 10-year-olds and teenagers, so it is neither
    assert concept_codes(plugin.vocabulary, "child_adult", age) == (1, 1, UNMAPPED, 0, 0, 0, 0, 0, 0)


def test_utkface_five_races_and_age_groups():
    # RACES = White, Black, Asian, Indian, Others: Others is non-White (as in utkface-cb) and in no race4 class
    plugin = UTKFace()
    race = plugin.attributes["race"]
    assert concept_codes(plugin.vocabulary, "race_binary", race) == (0, 1, 1, 1, 1)
    assert concept_codes(plugin.vocabulary, "race4", race) == (0, 1, 2, 3, UNMAPPED)
    assert concept_codes(plugin.vocabulary, "age_40", plugin.attributes["age_group"]) == (0, 0, 1, 1)
    cb = UTKFaceControlledBias()
    assert concept_codes(cb.vocabulary, "race_binary", cb.attributes["race_binary"]) == (0, 1)
    assert concept_codes(cb.vocabulary, "child_adult", cb.attributes["age_bias"]) == (0, 1)  # 20+, 0-10


def test_celeba_reads_male_as_gender_and_young_approximately_as_under_40():
    # CelebA's classes are (not_Male, Male); gender's are (male, female): the codes swap. (not_Young, Young) read as
    # age_40's (0-39, 40+): not_Young is 40+ (1), Young 0-39 (0), declared approximate; Male is exact
    plugin = CelebA()
    assert list(plugin.vocabulary) == ["gender", "age_40"]
    assert concept_codes(plugin.vocabulary, "gender", plugin.attributes["Male"]) == (1, 0)
    assert concept_codes(plugin.vocabulary, "age_40", plugin.attributes["Young"]) == (1, 0)
    assert concept_map(plugin.vocabulary, "gender", "Male").approximate == ""
    assert "annotators' impression" in concept_map(plugin.vocabulary, "age_40", "Young").approximate


@pytest.mark.parametrize(
    "vocabulary, message",
    [
        ({"skin": {"g": {"f": "female", "m": "male"}}}, r"concept 'skin' is not one of \["),
        ({"gender": {"sex": {"f": "female", "m": "male"}}}, r"attribute 'sex': no such attribute; the dataset has"),
        ({"gender": {"g": {"f": "female"}}}, r"'g': maps classes \['f'\], expected each of \['f', 'm'\]"),
        ({"gender": {"g": {"f": "female", "m": "man"}}}, r"\['man'\] are not classes of 'gender'"),
        ({"gender": {"g": {"f": "female", "m": None}}}, r"no class maps onto \['male'\] of 'gender'"),
        ({"gender": {"g": [("f", "female"), ("m", "male")]}}, r"'g': expected a dict .* or a data.ConceptMap"),
        ({"gender": {"g": ConceptMap({"f": "female", "m": "male"}, 1)}}, r"'approximate' must say why in words, got 1"),
        ({"gender": {"g": ConceptMap({"f": "female"}, "close")}}, r"'g': maps classes \['f'\], expected each of"),
    ],
)
def test_a_wrong_vocabulary_names_the_dataset_concept_attribute_and_class(vocabulary, message):
    with pytest.raises(ValueError, match=message) as err:
        check_vocabulary("toy", {"g": Attribute("g", ("f", "m"))}, vocabulary)
    assert str(err.value).startswith("dataset 'toy'")


def test_concepts_name_their_classes_once():
    assert all(len(set(c.classes)) == len(c.classes) >= 2 for c in CONCEPTS.values())
