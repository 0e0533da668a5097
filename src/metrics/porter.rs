//! The Porter stemmer (Porter 1980, "An algorithm for suffix stripping") as NLTK implements it
//! in its default mode, NLTK_EXTENSIONS (nltk/stem/porter.py), which is what rouge-score's
//! `use_stemmer=True` calls on every token longer than 3 characters. The extensions over the
//! paper: a table of irregular forms, words of 1-2 letters left alone, `-ies`/`-ied` on 4-letter
//! words kept as `-ie`, `y -> i` only after a consonant that is not the first letter, `-alli`
//! stripped recursively, `-fulli` and `-logi` in step 2, and a 2-letter `vc` counting as `cvc`.
//! rouge-score's tokens are ASCII lowercase letters and digits; other input is returned lowercased.

/// NLTK's irregular forms: word -> stem, checked before any step.
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

/// The stem of `word` (lowercased first), NLTK's `PorterStemmer().stem(word)`.
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some((_, s)) = IRREGULAR.iter().find(|(w, _)| *w == lower) {
        return s.to_string();
    }
    if word.chars().count() <= 2 || !lower.is_ascii() {
        return lower;
    }
    let mut w = lower.into_bytes();
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    w = step5b(w);
    String::from_utf8(w).unwrap_or_default()
}

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u')
}

/// Per letter, whether it is a consonant: not a vowel, and a `y` only where the letter before it
/// is not a consonant (or it starts the word).
fn consonants(w: &[u8]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if is_vowel(c) {
            false
        } else if c == b'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

fn is_consonant(w: &[u8], i: usize) -> bool {
    consonants(&w[..=i])[i]
}

/// m in [C](VC){m}[V]: the number of vowel-to-consonant transitions.
fn measure(w: &[u8]) -> usize {
    consonants(w).windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(w: &[u8]) -> bool {
    consonants(w).iter().any(|&c| !c)
}

fn ends_double_consonant(w: &[u8]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// *o: ends consonant-vowel-consonant, the last not w, x or y; or (NLTK) is a 2-letter
/// vowel-consonant word.
fn ends_cvc(w: &[u8]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], b'w' | b'x' | b'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

type Condition<'a> = Option<&'a dyn Fn(&[u8]) -> bool>;

/// NLTK's `_apply_rule_list`: the first rule whose suffix the word has decides; its stem takes
/// the replacement if the condition holds, else the word stays. `*d` is the double-consonant
/// rule of step 1b (its stem drops both letters).
fn apply_rules(w: Vec<u8>, rules: &[(&str, &str, Condition)]) -> Vec<u8> {
    for &(suffix, replacement, condition) in rules {
        if suffix == "*d" && ends_double_consonant(&w) {
            let stem = &w[..w.len() - 2];
            return if condition.is_none_or(|c| c(stem)) {
                [stem, replacement.as_bytes()].concat()
            } else {
                w
            };
        }
        if w.ends_with(suffix.as_bytes()) {
            let stem = &w[..w.len() - suffix.len()];
            return if condition.is_none_or(|c| c(stem)) {
                [stem, replacement.as_bytes()].concat()
            } else {
                w
            };
        }
    }
    w
}

fn replace_suffix(w: &[u8], suffix: &str, replacement: &str) -> Vec<u8> {
    [&w[..w.len() - suffix.len()], replacement.as_bytes()].concat()
}

fn step1a(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ies") && w.len() == 4 {
        return replace_suffix(&w, "ies", "ie");
    }
    apply_rules(
        w,
        &[
            ("sses", "ss", None),
            ("ies", "i", None),
            ("ss", "ss", None),
            ("s", "", None),
        ],
    )
}

fn step1b(w: Vec<u8>) -> Vec<u8> {
    if w.ends_with(b"ied") {
        return replace_suffix(&w, "ied", if w.len() == 4 { "ie" } else { "i" });
    }
    if w.ends_with(b"eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 {
            [stem, b"ee"].concat()
        } else {
            w
        };
    }
    let Some(stem) = ["ed", "ing"].iter().find_map(|s| {
        let stem = w.strip_suffix(s.as_bytes())?;
        contains_vowel(stem).then(|| stem.to_vec())
    }) else {
        return w;
    };
    let last = stem.last().copied().unwrap_or(b' ');
    let last_s = (last as char).to_string();
    let not_lsz = move |_: &[u8]| !matches!(last, b'l' | b's' | b'z');
    let short = |s: &[u8]| measure(s) == 1 && ends_cvc(s);
    apply_rules(
        stem,
        &[
            ("at", "ate", None),
            ("bl", "ble", None),
            ("iz", "ize", None),
            ("*d", &last_s, Some(&not_lsz)),
            ("", "e", Some(&short)),
        ],
    )
}

fn step1c(w: Vec<u8>) -> Vec<u8> {
    let cond = |s: &[u8]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(w, &[("y", "i", Some(&cond))])
}

fn step2(w: Vec<u8>) -> Vec<u8> {
    let positive = |s: &[u8]| measure(s) > 0;
    if w.ends_with(b"alli") && positive(&w[..w.len() - 4]) {
        return step2(replace_suffix(&w, "alli", "al"));
    }
    let word = w.clone();
    let logi = move |_: &[u8]| measure(&word[..word.len() - 3]) > 0;
    let p: Condition = Some(&positive);
    apply_rules(
        w,
        &[
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
            ("logi", "log", Some(&logi)),
        ],
    )
}

fn step3(w: Vec<u8>) -> Vec<u8> {
    let positive = |s: &[u8]| measure(s) > 0;
    let p: Condition = Some(&positive);
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

fn step4(w: Vec<u8>) -> Vec<u8> {
    let gt1 = |s: &[u8]| measure(s) > 1;
    let ion = |s: &[u8]| measure(s) > 1 && matches!(s.last(), Some(b's' | b't'));
    let g: Condition = Some(&gt1);
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
            ("ion", "", Some(&ion)),
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

fn step5a(w: Vec<u8>) -> Vec<u8> {
    if let Some(stem) = w.strip_suffix(b"e") {
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

fn step5b(w: Vec<u8>) -> Vec<u8> {
    let word = w.clone();
    let cond = move |_: &[u8]| measure(&word[..word.len() - 1]) > 1;
    apply_rules(w, &[("ll", "l", Some(&cond))])
}

#[cfg(test)]
mod tests {
    use super::stem;

    /// Expected stems from NLTK 3.10.4's PorterStemmer() itself.
    #[test]
    fn known_stems() {
        for (word, want) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("running", "run"),
            ("generalization", "gener"),
            ("dying", "die"),
            ("skies", "sky"),
            ("agreed", "agre"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("analogi", "analog"),
            ("is", "is"),
        ] {
            assert_eq!(stem(word), want, "{word}");
        }
    }
}
