from luoxia.generate.postprocess import collapse_repeats, stop_prefix_length, text_units, trim_at_stop


def test_trim_at_the_earliest_stop():
    assert trim_at_stop("abc STOP def END", ["END", "STOP"]) == ("abc ", True)
    assert trim_at_stop("nothing here", ["END"]) == ("nothing here", False)


def test_stop_prefix_is_held_back():
    assert stop_prefix_length("hello EN", ["END"]) == 2
    assert stop_prefix_length("hello E", ["END", "Eh"]) == 1
    assert stop_prefix_length("hello", ["END"]) == 0


def test_collapse_repeated_ngrams():
    assert collapse_repeats("the the the cat sat") == "the cat sat"
    assert collapse_repeats("I am here. I am here. I am here. Done", max_n=4) == "I am here. Done"
    assert collapse_repeats("I am here. I am here. Done", max_n=3) == "I am here. I am here. Done"
    assert collapse_repeats("床前明月光床前明月光", max_n=5) == "床前明月光"
    assert collapse_repeats("no repeats in this sentence") == "no repeats in this sentence"


def test_units_are_words_and_cjk_characters():
    assert text_units("Hello, world! 你好") == ["Hello", ",", "world", "!", "你", "好"]
