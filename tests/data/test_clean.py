from luoxia.data.clean import clean_and_dedup, clean_text


def test_clean_text_normalises_and_strips_controls():
    assert clean_text("e\u0301t\u00e9\r\nx\x00y\x1b\tz\ufeff ") == "\u00e9t\u00e9\nxy\tz"
    assert clean_text("床前明月光，疑是地上霜。") == "床前明月光，疑是地上霜。"  # NFC keeps full-width punctuation
    assert clean_text("ＡＢ，", "NFKC") == "AB,"


def test_exact_duplicates_ignore_case_and_spacing():
    kept, stats = clean_and_dedup(["Hello  world", "hello world", "", "something else entirely"])
    assert kept == ["Hello  world", "something else entirely"]
    assert stats.exact_duplicates == 1 and stats.empty == 1 and stats.kept == 2


def test_near_duplicates_removed_distinct_kept():
    base = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. " * 3
    near = base.replace("lazy", "sleepy", 1)
    other = "A completely different sentence about rivers, mountains and the long road home in autumn. " * 3
    kept, stats = clean_and_dedup([base, near, other])
    assert kept == [base.strip(), other.strip()]
    assert stats.near_duplicates == 1


def test_near_dedup_can_be_turned_off():
    base = "The quick brown fox jumps over the lazy dog while the cat watches. " * 3
    kept, _ = clean_and_dedup([base, base.replace("lazy", "sleepy", 1)], near_dup_threshold=None)
    assert len(kept) == 2
    kept, _ = clean_and_dedup([base, base], dedup=False)
    assert len(kept) == 2


def test_near_dedup_works_for_chinese():
    poems = ("床前明月光，疑是地上霜。举头望明月，低头思故乡。白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
             "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。红豆生南国，春来发几枝。愿君多采撷，此物最相思。")
    variant = poems.replace("故乡", "故園", 1)  # one character differs: a near duplicate
    other = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。" * 3
    kept, stats = clean_and_dedup([poems, variant, other])
    assert kept == [poems, other] and stats.near_duplicates == 1
