"""Chinese administrative regions as the demands write them: 浙江省金华市永康市 -> (浙江省, 金华市, 永康市).

Statistics group demands by city (地级市), visit plans by district (区, 县, 县级市): one day's route
stays in one district. The parse is by suffix, in order, as staff write an address:

    浙江省金华市永康市   -> 浙江省 / 金华市 / 永康市
    浙江省湖州市长兴县   -> 浙江省 / 湖州市 / 长兴县
    上海市浦东新区       -> ""     / 上海市 / 浦东新区     (a municipality is its own city)
    浙江省金华市         -> 浙江省 / 金华市 / ""
    永康                 -> ""     / ""     / ""          (unparsed: callers fall back to the text)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROVINCE = re.compile(r"^(.{2,7}?(?:省|自治区|特别行政区))")
_CITY = re.compile(r"^(.{2,9}?(?:市|自治州|地区|盟))")
_DISTRICT = re.compile(r"^(.{1,9}?(?:区|县|市|旗))")


@dataclass(frozen=True, slots=True)
class Region:
    province: str
    city: str
    district: str
    text: str

    @property
    def city_label(self) -> str:
        """The city, or the text as written when it names none."""
        return self.city or self.text or "（未填地区）"

    @property
    def district_label(self) -> str:
        """The district, else the city's own urban area (金华市区), else the text as written."""
        if self.district:
            return self.district
        if self.city:
            return f"{self.city}（市区）"
        return self.text or "（未填地区）"


def parse_region(text: str) -> Region:
    rest = re.sub(r"\s+", "", text or "")
    whole = rest
    province = city = district = ""
    if m := _PROVINCE.match(rest):
        province, rest = m.group(1), rest[m.end() :]
    if m := _CITY.match(rest):
        city, rest = m.group(1), rest[m.end() :]
    if city and (m := _DISTRICT.match(rest)):
        district, rest = m.group(1), rest[m.end() :]
    return Region(province, city, district, whole)
