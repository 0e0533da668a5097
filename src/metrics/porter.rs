//! NLTK's Porter stemmer in its default mode, `NLTK_EXTENSIONS`
//! (`nltk.stem.porter.PorterStemmer()`, nltk 3.10.4), which is what rouge-score's tokenizer calls
//! on every token longer than 3 characters when `use_stemmer=True`. The algorithm is
//! M. F. Porter's, "An algorithm for suffix stripping", Program 14(3), 1980, pp. 130-137; NLTK's
//! mode adds Martin Porter's later changes and its own: a table of irregular forms, words of 1-2
//! characters left alone, 4-letter `-ies`/`-ied` kept as `-ie`, `y -> i` only after a consonant
//! that is not the whole stem, `-alli` stripped before the rest of step 2 and step 2 re-run,
//! `-bli`, `-fulli` and `-logi` in step 2, and a 2-letter vowel-consonant stem counting as `*o`.
//!
//! Like Python's `str`, a word is handled as a sequence of code points, so any `&str` works;
//! rouge-score only ever passes lowercase ASCII `[a-z0-9]+`, where the output equals NLTK's
//! (checked against `tests/fixtures/text_metrics/porter_goldens.tsv`).

/// A word as code points, as NLTK's Python strings index them.
type Word = Vec<char>;

/// A rule's condition on the stem left after removing its suffix.
type Cond<'a> = &'a dyn Fn(&[char]) -> bool;

/// NLTK's irregular forms (its `pool`): looked up before any step, and returned as they are.
const IRREGULAR: [(&str, &str); 16] = [
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

/// The stem of `word`, as NLTK's `PorterStemmer().stem(word)` (which lowercases first).
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some(&(_, irregular)) = IRREGULAR.iter().find(|(form, _)| *form == lower) {
        return irregular.to_string();
    }
    // NLTK measures the word as given, before lowercasing.
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Word = lower.chars().collect();
    for step in [step1a, step1b, step1c, step2, step3, step4, step5a, step5b] {
        w = step(w);
    }
    w.into_iter().collect()
}

/// Per code point, whether it is a consonant. A `y` is a consonant at the start of the word or
/// after a vowel, and a vowel after a consonant; anything other than a, e, i, o, u and y
/// (digits included) is a consonant.
fn consonant_flags(w: &[char]) -> impl Iterator<Item = bool> + '_ {
    let mut previous = false;
    w.iter().enumerate().map(move |(i, &c)| {
        let consonant = match c {
            'a' | 'e' | 'i' | 'o' | 'u' => false,
            'y' => i == 0 || !previous,
            _ => true,
        };
        previous = consonant;
        consonant
    })
}

/// Whether `w[i]`, which must exist, is a consonant; it depends only on the letters up to `i`.
fn is_consonant(w: &[char], i: usize) -> bool {
    consonant_flags(&w[..=i]).last() == Some(true)
}

/// The paper's m in `[C](VC){m}[V]`: how many times a vowel is followed by a consonant.
fn measure(w: &[char]) -> usize {
    let mut m = 0;
    let mut after_vowel = false;
    for consonant in consonant_flags(w) {
        if consonant && after_vowel {
            m += 1;
        }
        after_vowel = !consonant;
    }
    m
}

fn positive_measure(w: &[char]) -> bool {
    measure(w) > 0
}

fn measure_over_1(w: &[char]) -> bool {
    measure(w) > 1
}

/// The paper's `*v*`.
fn contains_vowel(w: &[char]) -> bool {
    consonant_flags(w).any(|consonant| !consonant)
}

/// The paper's `*d`: ends with two equal consonants.
fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// The paper's `*o`: ends consonant-vowel-consonant with the last not w, x or y; NLTK also
/// counts a whole 2-letter word vowel-consonant (so "ing" on "ow" gives "owe").
fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], 'w' | 'x' | 'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

/// If `w` ends with the ASCII `suffix`, the rest of it.
fn strip<'w>(w: &'w [char], suffix: &str) -> Option<&'w [char]> {
    let n = suffix.len();
    let tail = w.len().checked_sub(n).map(|start| &w[start..])?;
    tail.iter()
        .copied()
        .eq(suffix.chars())
        .then(|| &w[..w.len() - n])
}

fn join(stem: &[char], ending: &str) -> Word {
    stem.iter().copied().chain(ending.chars()).collect()
}

/// NLTK's `_apply_rule_list`: the first rule whose suffix the word ends with is the only one
/// tried; it replaces the suffix when its condition holds on the stem, and otherwise the word
/// stays as it is.
fn apply_rules(w: Word, rules: &[(&str, &str, Cond)]) -> Word {
    for &(suffix, replacement, condition) in rules {
        if let Some(stem) = strip(&w, suffix) {
            return if condition(stem) {
                join(stem, replacement)
            } else {
                w
            };
        }
    }
    w
}

/// Plurals: sses -> ss, ies -> i, ss -> ss, s -> "" (NLTK: a 4-letter "-ies" keeps "ie").
fn step1a(w: Word) -> Word {
    if w.len() == 4 {
        if let Some(stem) = strip(&w, "ies") {
            return join(stem, "ie");
        }
    }
    let always: Cond = &|_| true;
    apply_rules(
        w,
        &[
            ("sses", "ss", always),
            ("ies", "i", always),
            ("ss", "ss", always),
            ("s", "", always),
        ],
    )
}

/// Past tenses and participles: -eed, -ed, -ing, then repairs of what they leave.
fn step1b(w: Word) -> Word {
    // NLTK: "-ied" becomes "-ie" on 4-letter words ("died") and "-i" otherwise ("spied").
    if let Some(stem) = strip(&w, "ied") {
        return join(stem, if w.len() == 4 { "ie" } else { "i" });
    }
    // Any "-eed" stops here, whether or not it is shortened ("feed" stays).
    if let Some(stem) = strip(&w, "eed") {
        return if positive_measure(stem) {
            join(stem, "ee")
        } else {
            w
        };
    }
    let Some(stem) = ["ed", "ing"]
        .iter()
        .find_map(|s| strip(&w, s).filter(|stem| contains_vowel(stem)))
    else {
        return w;
    };
    for (suffix, replacement) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if let Some(base) = strip(stem, suffix) {
            return join(base, replacement);
        }
    }
    // The double-consonant rule undoubles unless the letter is l, s or z. NLTK writes it as the
    // pseudo-suffix "*d", so a stem that literally ends "*d" takes it too (and becomes "…d").
    if ends_double_consonant(stem) || strip(stem, "*d").is_some() {
        let last = stem[stem.len() - 1];
        if matches!(last, 'l' | 's' | 'z') {
            return stem.to_vec();
        }
        let mut undoubled = stem[..stem.len() - 2].to_vec();
        undoubled.push(last);
        return undoubled;
    }
    if measure(stem) == 1 && ends_cvc(stem) {
        return join(stem, "e");
    }
    stem.to_vec()
}

/// y -> i after a consonant, unless that consonant is all that is left (NLTK: "sky", "spy").
fn step1c(w: Word) -> Word {
    let after_consonant: Cond = &|stem| stem.len() > 1 && is_consonant(stem, stem.len() - 1);
    apply_rules(w, &[("y", "i", after_consonant)])
}

/// Double suffixes to single ones, on stems with m > 0.
fn step2(w: Word) -> Word {
    // NLTK tries -alli first and runs step 2 again on the result ("-ionalli" -> ... ).
    if let Some(stem) = strip(&w, "alli") {
        if positive_measure(stem) {
            return step2(join(stem, "al"));
        }
    }
    // NLTK: "-logi" keeps its "l" in the stem it measures, so "geologi" reaches "geolog".
    let logi_holds = positive_measure(&w[..w.len().saturating_sub(3)]);
    let logi: Cond = &|_| logi_holds;
    let p: Cond = &positive_measure;
    let rules: [(&str, &str, Cond); 22] = [
        ("ational", "ate", p),
        ("tional", "tion", p),
        ("enci", "ence", p),
        ("anci", "ance", p),
        ("izer", "ize", p),
        ("bli", "ble", p),
        ("alli", "al", p),
        ("entli", "ent", p),
        ("eli", "e", p),
        ("ousli", "ous", p),
        ("ization", "ize", p),
        ("ation", "ate", p),
        ("ator", "ate", p),
        ("alism", "al", p),
        ("iveness", "ive", p),
        ("fulness", "ful", p),
        ("ousness", "ous", p),
        ("aliti", "al", p),
        ("iviti", "ive", p),
        ("biliti", "ble", p),
        ("fulli", "ful", p),
        ("logi", "log", logi),
    ];
    apply_rules(w, &rules)
}

/// -ic-, -full, -ness etc., on stems with m > 0.
fn step3(w: Word) -> Word {
    let p: Cond = &positive_measure;
    apply_rules(
        w,
        &[
            ("icate", "ic", p),
            ("ative", "", p),
            ("alize", "al", p),
            ("iciti", "ic", p),
            ("ical", "ic", p),
            ("ful", "", p),
            ("ness", "", p),
        ],
    )
}

/// Remaining suffixes, removed from stems with m > 1.
fn step4(w: Word) -> Word {
    let g: Cond = &measure_over_1;
    let ion: Cond = &|stem| measure_over_1(stem) && matches!(stem.last(), Some('s' | 't'));
    apply_rules(
        w,
        &[
            ("al", "", g),
            ("ance", "", g),
            ("ence", "", g),
            ("er", "", g),
            ("ic", "", g),
            ("able", "", g),
            ("ible", "", g),
            ("ant", "", g),
            ("ement", "", g),
            ("ment", "", g),
            ("ent", "", g),
            ("ion", "", ion),
            ("ou", "", g),
            ("ism", "", g),
            ("ate", "", g),
            ("iti", "", g),
            ("ous", "", g),
            ("ive", "", g),
            ("ize", "", g),
        ],
    )
}

/// A final e goes when m > 1, or when m = 1 and the stem does not end cvc ("cease" -> "ceas",
/// "rate" stays). Unlike the rule lists, both conditions are tried.
fn step5a(w: Word) -> Word {
    if let Some(stem) = strip(&w, "e") {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

/// -ll -> -l when the word less one l has m > 1 ("controll" -> "control", "roll" stays).
fn step5b(w: Word) -> Word {
    let holds = measure_over_1(&w[..w.len().saturating_sub(1)]);
    let over_1: Cond = &|_| holds;
    apply_rules(w, &[("ll", "l", over_1)])
}

#[cfg(test)]
mod tests {
    use super::stem;

    /// Expected values printed by nltk 3.10.4's `PorterStemmer().stem(word)`.
    #[test]
    fn matches_nltk_on_hand_picked_words() {
        for (word, want) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("running", "run"),
            ("generalization", "gener"),
            ("dying", "die"),
            ("lying", "lie"),
            ("sky", "sky"),
            ("skies", "sky"),
            ("news", "news"),
            ("agreed", "agre"),
            ("feed", "feed"),
            ("spied", "spi"),
            ("died", "die"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("falling", "fall"),
            ("happy", "happi"),
            ("enjoy", "enjoy"),
            ("relational", "relat"),
            ("geology", "geolog"),
            ("hopefulness", "hope"),
            ("radically", "radic"),
            ("controlling", "control"),
            ("syzygy", "syzygi"),
            ("mp3s", "mp3"),
            ("1990s", "1990"),
            ("is", "is"),
            ("Running", "run"),
        ] {
            assert_eq!(stem(word), want, "stem of {word}");
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        for word in [
            "",
            "y",
            "yy",
            "yyyyyyyy",
            "ied",
            "eed",
            "ing",
            "*d",
            "ba*ded",
            "ll",
            "naïveté",
            "日本語です",
        ] {
            let _ = stem(word);
        }
    }
}
