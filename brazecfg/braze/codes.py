"""Code lists Braze validates standard fields against, kept here so validation needs no
new dependency: ISO-3166-1 alpha-2 countries, ISO-639-1 languages, IANA time zones.
One copy serves both brazecfg's own value checks and the emulator."""

from __future__ import annotations

import functools
import zoneinfo

from brazecfg.braze.names import COUNTRY_NAMES, RAILS_TIME_ZONES

COUNTRIES: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

LANGUAGES: frozenset[str] = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu
    cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi
    ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks
    ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl
    nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl
    sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
    vi vo wa wo xh yi yo za zh zu
    """.split()
)


@functools.lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    """IANA names, read once: available_timezones() walks the tz database on every call."""
    return frozenset(zoneinfo.available_timezones())


def country_code(value: str) -> str | None:
    """The alpha-2 code Braze stores for a ``country`` value: the code itself in any case,
    or an English name mapped best-effort ("Australia" -> AU); None where Braze sets NULL."""
    text = " ".join(value.split())
    if text.upper() in COUNTRIES:
        return text.upper()
    return COUNTRY_NAMES.get(text.lower())


def iana_time_zone(value: str) -> str | None:
    """The IANA name for a ``time_zone`` value Braze accepts: an IANA name, or a Rails-style
    one ("Eastern Time (US & Canada)" -> America/New_York); None for a zone Braze ignores."""
    if value in time_zones():
        return value
    return RAILS_TIME_ZONES.get(value)
