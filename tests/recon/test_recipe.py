import pytest
from pydantic import ValidationError

from dyncdi_hpc.config import ReconParams, parse_recipe


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
    assert parse_recipe("2*(100*RAAR+10*er)") == (
        ("RAAR", 100),
        ("ER", 10),
        ("RAAR", 100),
        ("ER", 10),
    )


@pytest.mark.parametrize(
    ("recipe", "words"),
    [
        ("20*XX", "unknown step 'XX'"),
        ("0*ER", "count 0"),
        ("20*ER+", "expected a count"),
        ("(20*ER", "missing ')'"),
        ("20 ER", "expected '*'"),
        ("20*ER)", "unexpected ')'"),
        ("20*RAR", "unknown step 'RAR'"),
        ("2.5*ER", "count 2.... must be a whole number"),
        ("-3*ER", "unexpected '-'"),
        ("20*3*ER", "expected a step or '(' after '20\\*', found '3'"),
        ("20*", "expected a step or '(' after '20\\*', found the end"),
    ],
)
def test_bad_recipes_say_what_is_wrong(recipe, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_recipe(recipe)


def test_recipe_is_validated_in_the_parameters():
    with pytest.raises(ValidationError, match="unknown step"):
        ReconParams(recipe="100*FOO")
    with pytest.raises(ValidationError, match="count 0"):
        ReconParams(recipe="0*RAAR")


@pytest.mark.parametrize(
    "update",
    [
        {"raar_beta": 0.0},
        {"raar_beta": 1.5},
        {"coherence": (1.0, 1.0)},
        {"coherence": (1.0, -1.0, 1.0)},
        {"coherence_every": 0},
        {"shrinkwrap": {"start": -1}},
    ],
)
def test_new_parameters_are_validated(update):
    with pytest.raises(ValidationError):
        ReconParams(**update)
