"""Words that are not names, and the particles and titles names are written with: a module of its own, without
Presidio, so the redactor (which every daemon imports) can use them without loading the detector's libraries."""

from __future__ import annotations

# Capitalised words that open sentences and headings and are not names: imperative verbs of assistant requests,
# greetings, days, and common nouns and adjectives of titles. First names that are also words (Will, Mark, Bill,
# Grace, May, June) are deliberately absent: a name is redacted on doubt.
COMMON_WORDS = frozenset(  # a word list is read best as text
    """
    a about above add after again all also always an and answer any apply are as ask at attach be because
    before below best book both bring build but buy by calculate call can cancel cc change check choose clean
    compare compose compute confirm consider contact continue convert copy correct count create cut dear
    debug define delete describe design did do does draft edit email e-mail enable estimate even every explain
    export extract fetch file fill find fix for format forward from generate get give go good great greetings
    hello help here hey hi how i if import improve in include insert install integrate into invite is it its
    just keep let list log look make many me meeting message monday tuesday wednesday thursday friday saturday
    sunday morning evening afternoon night more most move my need new next no not note now of on once one only
    open or order our out outline overview page paraphrase pay phone ping plan planning please plot polish
    post prepare print project put quick quote read rebuild reboot remind remove rename reorder repeat reply
    report request reserve reset restart review rewrite ring run save schedule search see select sell send set
    ship short should show sign simplify so solve some sort start stop subject suggest summarise summarize
    summary sure table take task team tell text thank thanks that the their then there these they this those
    to today tomorrow translate try turn two under update upgrade use verify very was we weekly what when where
    which while who why with write yes yesterday you your brown fox lazy dog hamlet invoice customer
    order receipt report agenda minutes notes release version python java javascript excel word windows linux
    ubuntu kubernetes docker git github google amazon apple microsoft postgresql sql json yaml http https
    regards sincerely cheers yours kind warm signed sir madam world support everyone all team folks guys
    happy sorry glad new old fahrenheit celsius
    """.split()  # noqa: SIM905
)

# Particles between a name's words ("Ludwig van Beethoven", "Ahmad bin Ismail") and the titles before a name.
NAME_PARTICLES = (
    "van von de da di del della der den du la le dos das do bin binti ibn al el ter ten zu y e d'".split()  # noqa: SIM905
)
NAME_TITLES = ("mr", "mrs", "ms", "miss", "mx", "dr", "prof")

# Month names, which are also given names (April, June) and stand beside numbers as street words do ("12 March
# 2021"): neither a lower-case name nor a street's word.
MONTHS = frozenset(
    "january february march april may june july august september october november december".split()  # noqa: SIM905
)
MONTH_ABBREVIATIONS = frozenset("jan feb mar apr jun jul aug sep sept oct nov dec".split())  # noqa: SIM905
