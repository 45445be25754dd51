import pytest
from pydantic import ValidationError

from dyncdi_hpc.config import ReconParams
from dyncdi_hpc.recon.recipe import parse_recipe


def test_nested_recipe_expands_and_merges_neighbours():
    assert parse_recipe("3*(20*ER+180*HIO)+20*ER") == (
        ("ER", 20),
        ("HIO", 180),
        ("ER", 20),
        ("HIO", 180),
        ("ER", 20),
        ("HIO", 180),
        ("ER", 20),
    )
    assert parse_recipe("10*er + 5*ER") == (("ER", 15),)


@pytest.mark.parametrize(
    ("recipe", "words"),
    [
        ("20*XX", "unknown step 'XX'"),
        ("0*ER", "count 0"),
        ("20*ER+", "expected a count"),
        ("(20*ER", "missing ')'"),
        ("20 ER", "expected '*'"),
        ("20*ER)", "unexpected ')'"),
    ],
)
def test_bad_recipes_say_what_is_wrong(recipe, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe(recipe)


def test_recipe_is_validated_in_the_parameters():
    with pytest.raises(ValidationError, match="unknown step"):
        ReconParams(recipe="100*FOO")
