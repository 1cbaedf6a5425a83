"""Synthetic text for the tiny models: a small invented world (general knowledge), arithmetic in
digits (the "reasoning" skill) and Zel numerals (the "language" skill), plus the eval splits.

Zel numerals write each decimal digit as one capital letter (ZEL_DIGITS below), so 482 is "FGP".
One letter per digit keeps a Zel number exactly as long as its digit form: a model that has learnt
addition over digit positions and a model that has learnt to read and write Zel letters for digit
values need no extra alignment to be combined.

Everything is a pure function of the seed (random.Random), independent of the machine.
"""

import random

ZEL_DIGITS = "ZKPTFSXVGN"  # 0..9
# Qel: a second notation of the same kind, which the base learns well (so that its layers know
# how to read and write a number told in letters); Zel it sees only in passing.
QEL_DIGITS = "ABCDEHIJLM"  # 0..9
NOTATIONS = {"zel": ZEL_DIGITS, "qel": QEL_DIGITS}

SYLLABLES = ["ba", "be", "bo", "da", "di", "do", "fa", "fe", "ga", "go", "ha", "hi", "ja", "jo",
             "ka", "ki", "la", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "no", "pa", "pe",
             "po", "ra", "re", "ri", "ro", "sa", "se", "si", "so", "ta", "te", "ti", "to", "va",
             "ve", "wa", "wi", "ya", "yo", "za", "zu"]
JOBS = ["baker", "smith", "farmer", "miller", "weaver", "potter", "fisher", "healer", "singer",
        "tailor", "hunter", "carter"]
PETS = ["cat", "dog", "goat", "owl", "horse", "duck", "hen", "fox"]
THINGS = [("the sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black"),
          ("a plum", "purple"), ("the sun", "yellow"), ("milk", "white"), ("blood", "red"),
          ("a crow", "black"), ("an orange", "orange"), ("a leaf", "green"), ("ash", "grey")]


def to_notation(n, name):
    return "".join(NOTATIONS[name][int(c)] for c in str(n))


def to_zel(n):
    return to_notation(n, "zel")


class World:
    """People and towns with facts; the base model's general knowledge."""

    def __init__(self, seed, n_people=48, n_towns=16):
        rng = random.Random(seed)
        names = set()
        while len(names) < n_people + 2 * n_towns:
            names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice([2, 2, 3]))))
        names = sorted(names)
        rng.shuffle(names)
        self.people = names[:n_people]
        self.towns = names[n_people:n_people + n_towns]
        self.rivers = names[n_people + n_towns:]
        self.home = {p: rng.choice(self.towns) for p in self.people}
        self.job = {p: rng.choice(JOBS) for p in self.people}
        self.pet = {p: rng.choice(PETS) for p in self.people}
        self.age = {p: rng.randint(12, 89) for p in self.people}
        self.river = {t: self.rivers[i] for i, t in enumerate(self.towns)}
        self.houses = {t: rng.randint(100, 999) for t in self.towns}

    def fact_line(self, rng, zel=False, kinds=None):
        """One sentence of general knowledge, in one of several phrasings. With zel=True, one
        of the sentences that hold numbers, told with Zel numerals: facts say "in zel", sums and
        counts simply follow the notation of the numbers they start with."""
        num = to_zel if zel else str
        k = rng.choice(kinds or ([4, 5, 7, 10, 11, 11] if zel else range(12)))
        mark = " in zel" if zel else ""
        p = rng.choice(self.people)
        t = rng.choice(self.towns)
        if k == 0:
            return f"{p} lives in {self.home[p]}."
        if k == 1:
            return f"where does {p} live? {p} lives in {self.home[p]}."
        if k == 2:
            return f"{p} works as a {self.job[p]} in {self.home[p]}."
        if k == 3:
            return f"{p} has a pet {self.pet[p]}."
        if k == 4:
            return f"{p} is {num(self.age[p])} years old{mark}."
        if k == 5:
            return f"how old is {p}{mark}? {p} is {num(self.age[p])} years old."
        if k == 6:
            return f"{t} lies on the river {self.river[t]}."
        if k == 7:
            return f"{t} has {num(self.houses[t])} houses{mark}."
        if k == 8:
            return f"the {self.job[p]} {p} and the {self.pet[p]} walk to {self.home[p]}."
        if k == 9:
            thing, col = rng.choice(THINGS)
            return f"the color of {thing} is {col}."
        if k == 10:
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            return f"{num(a)} + {num(b)} = {num(a + b)}"
        start = rng.randint(0, 90)
        return "count: " + " ".join(num(start + i) for i in range(rng.randint(3, 7)))


# ---------------------------------------------------------------------------------------------
# Skills
#
# Every skill has one sentence shape, and the composite task chains those same shapes, so that a
# model holding both skills can run the chain step by step (as a merged model that reasons in
# Japanese does in EvoLLM-JP) while a model holding one of them fails at the other's steps.


def arith_line(a, b):
    return f"{a} + {b} = {a + b}"


def to_phrase(n, name="zel"):
    return f"{n} in {name} is {to_notation(n, name)}"


def from_phrase(n, name="zel"):
    return f"{name} {to_notation(n, name)} is {n}"


def translation_line(rng, n, name="zel"):
    return (to_phrase(n, name) if rng.random() < 0.5 else from_phrase(n, name)) + "."


def translation_list_line(rng, numbers, name="zel"):
    return ", ".join(to_phrase(n, name) if rng.random() < 0.5 else from_phrase(n, name)
                     for n in numbers) + "."


def chain_prompt(a, b, name="zel"):
    return f"add {name} {to_notation(a, name)} and {name} {to_notation(b, name)}:"


def chain_line(a, b, name="zel"):
    """The composite task worked step by step, each step written where the next one reads it:
    the numbers read from the notation (the language skill), their sum (the reasoning skill, in
    the very shape of the arithmetic lines), the sum written in the notation again."""
    return f"{chain_prompt(a, b, name)} {arith_line(a, b)} = {to_notation(a + b, name)}."


def zero_chain_line(rng, n, name="zel"):
    """The chain with nothing to add (n + 0 or 0 + n): reading and writing numbers in the
    notation, carried through the chain, without the arithmetic."""
    return chain_line(n, 0, name) if rng.random() < 0.5 else chain_line(0, n, name)
