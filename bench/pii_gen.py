"""Seeded generators of Chinese and English sentences with personal data in them, and of look-alikes.

Shared by `bench/pii.py` (recall and look-alike rates) and `bench/trust_latency.py` (realistic
1,000-character texts). Every value, name list, address part and template here was written for the
benchmark (none comes from a training set), so recall on it is recall on text the detectors never saw.

A `Sample` is one sentence and the values in it (type, start, end) in offsets of the sentence as
written, zero-width and full-width characters included. Writing varies on purpose: separators,
full-width digits, a zero-width character inside the value, the value at the sentence's start or
end, glued to Chinese characters or punctuation.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers

# ---------------------------------------------------------------- samples


@dataclass(frozen=True)
class Value:
    type: str
    start: int
    end: int
    variant: str  # plain | fullwidth | zero_width
    kind: str  # the generator's sub-kind (cn_mobile, uk_intl, newer_district, …)


@dataclass
class Sample:
    text: str
    lang: str  # zh | en
    values: list[Value] = field(default_factory=list)


FULLWIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in string.digits})
ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")


def vary(value: str, rng: random.Random, fullwidth_ok: bool) -> tuple[str, str]:
    """The value as written: plain (70%), full-width digits (15%, where it has digits), or with a
    zero-width character inside (15%)."""
    roll = rng.random()
    if roll < 0.15 and fullwidth_ok and any(c.isdigit() for c in value):
        return value.translate(FULLWIDTH), "fullwidth"
    if roll < 0.30 and len(value) >= 2:
        cut = rng.randrange(1, len(value))
        return value[:cut] + rng.choice(ZERO_WIDTH) + value[cut:], "zero_width"
    return value, "plain"


def fill(template: str, slots: dict[str, tuple[str, str, str, str]]) -> tuple[str, list[Value]]:
    """``template`` with ``{NAME}`` slots replaced; each slot is (type, text, variant, kind)."""
    out, values, i = [], [], 0
    length = 0
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            break
        k = template.index("}", j)
        out.append(template[i:j])
        length += j - i
        kind, text, variant, sub = slots[template[j + 1 : k]]
        values.append(Value(kind, length, length + len(text), variant, sub))
        out.append(text)
        length += len(text)
        i = k + 1
    return "".join(out), values


# ---------------------------------------------------------------- word lists (written for this benchmark)

CN_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔汤"
)
CN_COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "东方", "慕容")
CN_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚华建国文辉鹏宇浩婷雪琳晨欣怡佳俊嘉子梓涵思雨轩博志海红春玉兰"
    "梅晓东斌飞鑫凯琪瑶颖倩慧若诗晗睿哲铭泽瀚昊然悦彤蕾薇桂英秀荣德成康宁安"
)
EN_FIRST = (
    "James",
    "Mary",
    "Emily",
    "Michael",
    "Sarah",
    "David",
    "Olivia",
    "Daniel",
    "Sophie",
    "Priya",
    "Mohammed",
    "Hannah",
    "Oliver",
    "Charlotte",
    "George",
    "Amelia",
    "Lucas",
    "Chloe",
    "Ethan",
    "Grace",
    "Noah",
    "Isabella",
    "Liam",
    "Emma",
    "Jessica",
    "Thomas",
    "Rebecca",
    "Samuel",
    "Fatima",
    "Carlos",
    "Aisha",
    "Benjamin",
    "Natalie",
    "Robert",
    "Laura",
    "Kevin",
    "Megan",
    "Andrew",
    "Rachel",
    "Harry",
)
EN_LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Anderson",
    "Thomas",
    "Moore",
    "Martin",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Patel",
    "Khan",
    "Nguyen",
    "O'Brien",
    "MacDonald",
    "Fitzgerald",
    "Okafor",
    "Kowalski",
    "Schneider",
    "Rossi",
    "Hughes",
    "Evans",
    "Murphy",
    "Cooper",
    "Bennett",
    "Turner",
)
PINYIN_SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Lin")
PINYIN_GIVEN = (
    "Wei",
    "Fang",
    "Na",
    "Min",
    "Jing",
    "Lei",
    "Jun",
    "Yang",
    "Tao",
    "Ming",
    "Xiaoming",
    "Jianguo",
    "Haoran",
    "Yuxuan",
    "Zihan",
    "Xinyi",
    "Jiahui",
    "Zhiwei",
)

# (province or "" for a municipality, city, districts)
CN_PLACES = (
    ("", "北京市", ("海淀区", "朝阳区", "东城区", "西城区", "丰台区", "昌平区")),
    ("", "上海市", ("浦东新区", "徐汇区", "静安区", "黄浦区", "闵行区")),
    ("", "天津市", ("和平区", "南开区", "河西区")),
    ("", "重庆市", ("渝中区", "江北区", "沙坪坝区")),
    ("广东省", "广州市", ("天河区", "越秀区", "海珠区", "番禺区")),
    ("广东省", "深圳市", ("南山区", "福田区", "宝安区", "龙岗区")),
    ("浙江省", "杭州市", ("西湖区", "上城区", "滨江区", "余杭区")),
    ("江苏省", "南京市", ("鼓楼区", "玄武区", "建邺区")),
    ("江苏省", "苏州市", ("姑苏区", "工业园区", "吴中区")),
    ("四川省", "成都市", ("武侯区", "锦江区", "青羊区", "高新区")),
    ("湖北省", "武汉市", ("洪山区", "武昌区", "江汉区")),
    ("陕西省", "西安市", ("雁塔区", "碑林区", "未央区")),
    ("山东省", "青岛市", ("市南区", "崂山区", "李沧区")),
    ("福建省", "厦门市", ("思明区", "湖里区")),
    ("湖南省", "长沙市", ("岳麓区", "芙蓉区", "天心区")),
    ("河南省", "郑州市", ("金水区", "二七区")),
)
CN_STREET_NAMES = (
    "中山",
    "人民",
    "解放",
    "建设",
    "和平",
    "新华",
    "长江",
    "学院",
    "科技",
    "文化",
    "滨河",
    "春风",
    "幸福",
    "光明",
    "朝阳",
    "翠竹",
    "紫荆",
    "梧桐",
    "望江",
    "金桥",
    "中关村",
    "文三",
    "华强",
    "天府",
)
CN_STREET_KINDS = ("路", "大街", "街", "大道", "北路", "南路", "东路", "西路", "巷")
CN_COMPOUNDS = ("花园", "小区", "大厦", "公寓", "新村", "苑")
US_STREETS = (
    "Oak",
    "Maple",
    "Main",
    "Elm",
    "Cedar",
    "Pine",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Highland",
    "Jefferson",
    "Lincoln",
    "Madison",
    "Willow",
    "Chestnut",
    "Franklin",
    "Ridge",
    "Spring",
)
US_SUFFIXES = (
    "Street",
    "St.",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Boulevard",
    "Blvd",
    "Lane",
    "Drive",
    "Dr.",
    "Court",
    "Way",
    "Place",
)
US_CITIES = (
    ("Springfield", "IL"),
    ("Austin", "TX"),
    ("Portland", "OR"),
    ("Denver", "CO"),
    ("Madison", "WI"),
    ("Columbus", "OH"),
    ("Raleigh", "NC"),
    ("Boise", "ID"),
    ("Tucson", "AZ"),
    ("Albany", "NY"),
    ("Palo Alto", "CA"),
    ("Cambridge", "MA"),
    ("Seattle", "WA"),
    ("Atlanta", "GA"),
)
UK_STREETS = (
    "Baker",
    "Church",
    "Victoria",
    "Station",
    "Mill",
    "Queen's",
    "King's",
    "High",
    "Manor",
    "Park",
    "Albert",
    "York",
    "Grove",
    "Chapel",
    "Orchard",
)
UK_SUFFIXES = ("Street", "Road", "Lane", "Close", "Crescent", "Gardens", "Avenue", "Terrace", "Mews")
UK_TOWNS = (
    "London",
    "Manchester",
    "Leeds",
    "Bristol",
    "Edinburgh",
    "Cardiff",
    "Oxford",
    "York",
    "Brighton",
    "Norwich",
    "Bath",
    "Glasgow",
)
CN_ORG_WORDS = "华信达恒瑞通宏源鑫盛泰安博创新远联智汇天海嘉星辰云启明德润丰"
CN_ORG_INDUSTRIES = (
    "科技",
    "网络科技",
    "贸易",
    "电子",
    "生物医药",
    "文化传媒",
    "建设工程",
    "物流",
    "信息技术",
    "新能源",
    "食品",
    "教育咨询",
)
CN_ORG_FORMS = ("有限公司", "股份有限公司", "集团有限公司", "有限责任公司")
EN_ORG_WORDS = (
    "Northwind",
    "Bluepeak",
    "Silverline",
    "Redwood",
    "Brightwater",
    "Ironbridge",
    "Clearview",
    "Greenfield",
    "Stonegate",
    "Harborview",
    "Westbrook",
    "Kestrel",
    "Summit",
    "Lakeshore",
    "Oakridge",
    "Pinecrest",
)
EN_ORG_INDUSTRIES = (
    "Analytics",
    "Logistics",
    "Software",
    "Capital",
    "Health",
    "Foods",
    "Energy",
    "Media",
    "Robotics",
    "Consulting",
    "Pharmaceuticals",
    "Systems",
)
EN_ORG_FORMS = ("Inc.", "Ltd", "LLC", "Corporation", "Group", "Holdings", "Co.", "plc", "GmbH")


def pick(rng: random.Random, items):
    return items[rng.randrange(len(items))]


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


# ---------------------------------------------------------------- value generators: (text, kind)


def email(rng: random.Random) -> tuple[str, str]:
    first, last = pick(rng, EN_FIRST).lower(), pick(rng, EN_LAST).lower().replace("'", "")
    local = pick(
        rng,
        (
            f"{first}.{last}",
            f"{first[0]}{last}",
            f"{first}_{last}{digits(rng, 2)}",
            f"{pick(rng, PINYIN_SURNAMES).lower()}{pick(rng, PINYIN_GIVEN).lower()}{digits(rng, 3)}",
            f"{first}+{pick(rng, ('news', 'shop', 'work'))}",
            digits(rng, rng.randint(6, 10)),
        ),
    )
    domain = pick(
        rng,
        (
            "example.com",
            "example.org",
            "mail.example.cn",
            "corp.example.co.uk",
            "qq.com",
            "163.com",
            "outlook.example.net",
            "uni.example.edu",
            "example.io",
        ),
    )
    return f"{local}@{domain}", "email"


_CN_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "198",
    "199",
)
_CN_AREAS = (
    ("10", 8),
    ("21", 8),
    ("22", 8),
    ("20", 8),
    ("23", 8),
    ("25", 8),
    ("27", 8),
    ("28", 8),
    ("29", 8),
    ("755", 8),
    ("571", 8),
    ("512", 8),
    ("532", 8),
    ("731", 8),
    ("592", 7),
)
_US_AREAS = ("415", "212", "646", "312", "617", "206", "512", "303", "404", "713", "202", "919")


def _valid(number: str, region: str) -> bool:
    """Numbering-plan validity (the number could exist), so a miss is the detector's, not the generator's."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


def _phone_once(rng: random.Random, lang: str) -> tuple[str, str, str]:
    kind = pick(
        rng,
        ("cn_mobile", "cn_mobile", "cn_landline", "cn_landline")
        if lang == "zh"
        else ("us", "us", "uk_intl", "intl", "cn_mobile_intl"),
    )
    if kind == "cn_mobile":
        n = pick(rng, _CN_MOBILE_PREFIXES) + digits(rng, 8)
        text = pick(
            rng,
            (
                n,
                f"{n[:3]} {n[3:7]} {n[7:]}",
                f"{n[:3]}-{n[3:7]}-{n[7:]}",
                f"+86 {n}",
                f"+86-{n[:3]}-{n[3:7]}-{n[7:]}",
                f"(+86) {n}",
            ),
        )
        return text, kind, "CN"
    if kind == "cn_mobile_intl":
        n = pick(rng, _CN_MOBILE_PREFIXES) + digits(rng, 8)
        return pick(rng, (f"+86 {n}", f"+86 {n[:3]} {n[3:7]} {n[7:]}", f"0086 {n}")), kind, "CN"
    if kind == "cn_landline":
        area, size = pick(rng, _CN_AREAS)
        local = str(rng.randint(2, 8)) + digits(rng, size - 1)
        half = size // 2
        text = pick(
            rng,
            (
                f"0{area}-{local}",
                f"(0{area}) {local[:half]} {local[half:]}",
                f"0{area} {local}",
                f"0{area}-{local[:half]}-{local[half:]}",
                f"+86 {area} {local}",
            ),
        )
        return text, kind, "CN"
    if kind == "us":
        n = pick(rng, _US_AREAS) + str(rng.randint(2, 9)) + digits(rng, 2) + digits(rng, 4)
        text = pick(
            rng,
            (
                f"({n[:3]}) {n[3:6]}-{n[6:]}",
                f"{n[:3]}-{n[3:6]}-{n[6:]}",
                f"{n[:3]}.{n[3:6]}.{n[6:]}",
                f"+1 {n[:3]} {n[3:6]} {n[6:]}",
                f"1-{n[:3]}-{n[3:6]}-{n[6:]}",
                f"+1 ({n[:3]}) {n[3:6]}-{n[6:]}",
            ),
        )
        return text, kind, "US"
    if kind == "uk_intl":
        text = pick(
            rng,
            (
                f"+44 20 7{digits(rng, 3)} {digits(rng, 4)}",
                f"+44 (0)20 7{digits(rng, 3)} {digits(rng, 4)}",
                f"+44 7700 9{digits(rng, 5)}",
                f"+44 161 {rng.randint(2, 9)}{digits(rng, 2)} {digits(rng, 4)}",
                f"+44 131 {rng.randint(2, 9)}{digits(rng, 2)} {digits(rng, 4)}",
            ),
        )
        return text, kind, "GB"
    text = pick(
        rng,
        (
            f"+49 30 {rng.randint(2, 9)}{digits(rng, 7)}",
            f"+33 1 {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
            f"+81 3-{rng.randint(2, 9)}{digits(rng, 3)}-{digits(rng, 4)}",
            f"+65 6{digits(rng, 3)} {digits(rng, 4)}",
            f"+852 2{digits(rng, 3)} {digits(rng, 4)}",
            f"+61 2 9{digits(rng, 3)} {digits(rng, 4)}",
        ),
    )
    return text, "intl", "US"


def phone(rng: random.Random, lang: str) -> tuple[str, str]:
    """CN mobiles and landlines in Chinese text; US, UK (+44), other international numbers and +86
    mobiles in English text. National UK numbers are left out: written without +44 in English
    text, nothing says they are British (the region is chosen from the text: US)."""
    while True:
        text, kind, region = _phone_once(rng, lang)
        if _valid(text, region):
            return text, kind


# Districts (GB/T 2260) with the year each code appeared, so a holder can be older than the district.
CN_DISTRICTS_OLD = (
    "110101",
    "110102",
    "110105",
    "110108",
    "310101",
    "310104",
    "440103",
    "440104",
    "330102",
    "320102",
    "510104",
    "420106",
    "610103",
    "370202",
    "350203",
    "430104",
    "410105",
    "120101",
)
CN_DISTRICTS_NEW = (
    ("310115", 1993),
    ("440305", 1990),
    ("440306", 1993),
    ("440307", 1993),
    ("110114", 1999),
    ("110115", 2001),
    ("330110", 2001),
    ("500112", 1995),
    ("370213", 1994),
    ("320583", 1989),
    ("440113", 2000),
    ("330108", 1996),
    ("510107", 1990),
    ("350206", 1987),
    ("320505", 2002),
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check(body: str) -> str:
    """ISO 7064 MOD 11-2 check character of the first 17 characters."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


def _birth(rng: random.Random, first: int, last: int) -> str:
    year, month = rng.randint(first, last), rng.randint(1, 12)
    day = rng.randint(1, 28)
    return f"{year}{month:02d}{day:02d}"


def id_body(rng: random.Random) -> tuple[str, str]:
    """17 characters of a resident ID and its kind: an old district, or a district created after its holder's birth."""
    if rng.random() < 0.4:
        district, created = pick(rng, CN_DISTRICTS_NEW)
        return district + _birth(rng, 1930, min(created - 5, 1975)) + digits(rng, 3), "newer_district"
    return pick(rng, CN_DISTRICTS_OLD) + _birth(rng, 1940, 2008) + digits(rng, 3), "id"


def id_format(number: str, rng: random.Random) -> str:
    if number[-1] == "X" and rng.random() < 0.3:
        number = number[:-1] + "x"
    return pick(
        rng,
        (number, number, f"{number[:6]} {number[6:14]} {number[14:]}", f"{number[:6]}-{number[6:14]}-{number[14:]}"),
    )


def cn_id(rng: random.Random) -> tuple[str, str]:
    body, kind = id_body(rng)
    return id_format(body + id_check(body), rng), kind


def luhn_check(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


_CARD_NETWORKS = (
    ("4", 16, "visa"),
    ("51", 16, "mastercard"),
    ("55", 16, "mastercard"),
    ("2221", 16, "mastercard"),
    ("2720", 16, "mastercard"),
    ("34", 15, "amex"),
    ("37", 15, "amex"),
    ("6222", 19, "unionpay"),
    ("6217", 19, "unionpay"),
    ("6228", 19, "unionpay"),
    ("6225", 16, "unionpay"),
    ("6011", 16, "discover"),
    ("35", 16, "jcb"),
)


def card_body(rng: random.Random) -> tuple[str, str]:
    prefix, length, kind = pick(rng, _CARD_NETWORKS)
    return prefix + digits(rng, length - 1 - len(prefix)), kind


def card_format(number: str, rng: random.Random) -> str:
    if len(number) == 15:  # Amex: 4-6-5
        sep = pick(rng, (" ", "-", ""))
        return sep.join((number[:4], number[4:10], number[10:]))
    sep = pick(rng, (" ", " ", "-", ""))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def bank_card(rng: random.Random) -> tuple[str, str]:
    body, kind = card_body(rng)
    return card_format(body + luhn_check(body), rng), kind


def ip(rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.25:
        return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "ipv4_private"
    if roll < 0.7:
        return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "ipv4"
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(6)]
    if roll < 0.85:
        return "2001:db8:" + ":".join(groups), "ipv6"
    return f"2001:db8:{groups[0]}::{groups[1]}", "ipv6_compressed"


def password(rng: random.Random, length: int | None = None) -> str:
    length = length or rng.randint(10, 16)
    chars = string.ascii_letters + string.digits + "!$%^*_-"
    while True:
        value = "".join(rng.choice(chars) for _ in range(length))
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            return value


def url_credentials(rng: random.Random) -> tuple[str, str]:
    scheme = pick(rng, ("https", "http", "ftp", "postgres", "postgresql", "mysql", "redis", "mongodb", "amqp", "sftp"))
    user = pick(rng, ("admin", "deploy", "root", "svc_backup", pick(rng, EN_FIRST).lower(), "ci-bot"))
    host = pick(
        rng,
        (
            "db.internal.example.com",
            "git.example.org",
            "10.0.3.7:5432",
            "cache.example.net:6379",
            "files.example.cn",
            "mq.example.io:5672",
        ),
    )
    path = pick(rng, ("", "/app", "/repo.git", "/prod?sslmode=require", "/backup/2024"))
    return f"{scheme}://{user}:{password(rng)}@{host}{path}", scheme


def _token(rng: random.Random, count: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


def secret(rng: random.Random) -> tuple[str, str, str]:
    """(text before the value, the value, kind): the value alone is the secret; a name before it may be context."""
    upper = string.ascii_uppercase + string.digits
    urlsafe = string.ascii_letters + string.digits + "-_"
    kind = pick(
        rng,
        (
            "openai",
            "aws",
            "github",
            "github_pat",
            "slack",
            "google",
            "jwt",
            "luoxia",
            "assignment",
            "assignment_zh",
            "bearer",
        ),
    )
    if kind == "openai":
        return "", pick(rng, ("sk-", "sk-proj-")) + _token(rng, 40, urlsafe), kind
    if kind == "aws":
        return "", "AKIA" + _token(rng, 16, upper), kind
    if kind == "github":
        return "", "ghp_" + _token(rng, 36), kind
    if kind == "github_pat":
        return "", "github_pat_" + _token(rng, 22) + "_" + _token(rng, 59), kind
    if kind == "slack":
        return "", f"xoxb-{digits(rng, 12)}-{digits(rng, 12)}-{_token(rng, 24)}", kind
    if kind == "google":
        return "", "AIza" + _token(rng, 35, urlsafe), kind
    if kind == "jwt":
        return "", "eyJhbGciOiJIUzI1NiJ9." + "eyJ" + _token(rng, 30, urlsafe) + "." + _token(rng, 43, urlsafe), kind
    if kind == "luoxia":
        return "", "lx-" + _token(rng, 43, urlsafe), kind
    if kind == "assignment":
        name = pick(rng, ("password=", "api_key: ", "API_KEY=", "token = ", '"secret": "', "pwd=", "OPENAI_KEY="))
        return name, password(rng), kind
    if kind == "assignment_zh":
        return pick(rng, ("密码：", "密码:", "密钥：", "口令 ：", "令牌=")), password(rng), kind
    return "Authorization: Bearer ", _token(rng, rng.randint(24, 40), urlsafe), kind


def cn_name(rng: random.Random) -> str:
    surname = pick(rng, CN_COMPOUND_SURNAMES) if rng.random() < 0.05 else pick(rng, CN_SURNAMES)
    return surname + "".join(pick(rng, CN_GIVEN) for _ in range(1 if rng.random() < 0.35 else 2))


def en_name(rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.15:
        return f"{pick(rng, PINYIN_GIVEN)} {pick(rng, PINYIN_SURNAMES)}", "pinyin"
    if roll < 0.25:
        return f"{pick(rng, EN_FIRST)} {rng.choice(string.ascii_uppercase)}. {pick(rng, EN_LAST)}", "middle_initial"
    return f"{pick(rng, EN_FIRST)} {pick(rng, EN_LAST)}", "first_last"


def person(rng: random.Random, lang: str) -> tuple[str, str]:
    return (cn_name(rng), "cn_name") if lang == "zh" else en_name(rng)


def cn_address(rng: random.Random) -> tuple[str, str]:
    province, city, districts = pick(rng, CN_PLACES)
    street = pick(rng, CN_STREET_NAMES) + pick(rng, CN_STREET_KINDS)
    number = f"{rng.randint(1, 999)}号"
    roll = rng.random()
    if roll < 0.3:
        number += (
            f"{pick(rng, CN_STREET_NAMES)}{pick(rng, CN_COMPOUNDS)}{rng.randint(1, 30)}栋{rng.randint(1, 4)}单元"
            f"{rng.randint(1, 30)}0{rng.randint(1, 6)}室"
        )
    elif roll < 0.5:
        number += f"{rng.randint(1, 20)}号楼{rng.randint(1, 25)}0{rng.randint(1, 8)}"
    head = province if province and rng.random() < 0.7 else ""
    return head + city + pick(rng, districts) + street + number, "cn_province" if head else "cn_city"


def us_address(rng: random.Random) -> tuple[str, str]:
    city, state = pick(rng, US_CITIES)
    unit = pick(rng, ("", "", f", Apt {rng.randint(1, 40)}{rng.choice('ABCD')}", f", Suite {rng.randint(100, 999)}"))
    return (
        f"{rng.randint(1, 9999)} {pick(rng, US_STREETS)} {pick(rng, US_SUFFIXES)}{unit}, {city}, {state} "
        f"{rng.randint(10000, 99999)}"
    ), "us"


def uk_postcode(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPRSTUWY"
    outward = pick(
        rng,
        (
            f"{rng.choice(letters)}{rng.randint(1, 9)}",
            f"{rng.choice(letters)}{rng.choice(letters)}{rng.randint(1, 20)}",
        ),
    )
    return f"{outward} {rng.randint(1, 9)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"


def uk_address(rng: random.Random) -> tuple[str, str]:
    number = pick(
        rng,
        (
            str(rng.randint(1, 250)),
            f"{rng.randint(1, 250)}{rng.choice('AB')}",
            f"Flat {rng.randint(1, 12)}, {rng.randint(1, 90)}",
        ),
    )
    return f"{number} {pick(rng, UK_STREETS)} {pick(rng, UK_SUFFIXES)}, {pick(rng, UK_TOWNS)} {uk_postcode(rng)}", "uk"


def address(rng: random.Random, lang: str) -> tuple[str, str]:
    if lang == "zh":
        return cn_address(rng)
    return us_address(rng) if rng.random() < 0.55 else uk_address(rng)


def org(rng: random.Random, lang: str) -> tuple[str, str]:
    if lang == "zh":
        city = pick(rng, CN_PLACES)[1].removesuffix("市")
        name = "".join(rng.sample(CN_ORG_WORDS, 2))
        roll = rng.random()
        if roll < 0.15:
            return f"{city}{name}大学", "cn_university"
        if roll < 0.25:
            return f"{city}市第{pick(rng, '一二三四五六')}人民医院", "cn_hospital"
        return (city if rng.random() < 0.7 else "") + name + pick(rng, CN_ORG_INDUSTRIES) + pick(
            rng, CN_ORG_FORMS
        ), "cn_company"
    roll = rng.random()
    if roll < 0.15:
        return f"University of {pick(rng, UK_TOWNS + tuple(c for c, _ in US_CITIES))}", "en_university"
    if roll < 0.25:
        return f"{pick(rng, US_CITIES)[0]} General Hospital", "en_hospital"
    return f"{pick(rng, EN_ORG_WORDS)} {pick(rng, EN_ORG_INDUSTRIES)} {pick(rng, EN_ORG_FORMS)}", "en_company"


# ---------------------------------------------------------------- sentence templates
# {V} is the value under test; {P} a person's name (recorded too). Positions vary: sentence start
# and end, inside brackets and quotes, glued to Chinese characters, before punctuation.

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "EMAIL": {
        "zh": (
            "请发邮件到{V}，谢谢。",
            "我的邮箱是{V}",
            "{V}是{P}的工作邮箱。",
            "联系方式：{V}（工作日回复）",
            "邮箱{V}已停用",
            "简历请投递至「{V}」。",
        ),
        "en": (
            "Contact me at {V}.",
            "{V} is the address {P} uses for invoices.",
            "Email: {V}",
            "Send the report to {V}, not to the team list.",
            "Reach {P} via <{V}> any time.",
            "(reply to {V})",
        ),
    },
    "PHONE": {
        "zh": (
            "我的电话是{V}，有事打给我。",
            "电话{V}",
            "{V}是{P}的手机号。",
            "联系人：{P}，电话：{V}。",
            "请拨打（{V}）咨询",
            "客服热线{V}，24小时服务。",
            "有问题打{V}找我",
        ),
        "en": (
            "Call me at {V} tomorrow.",
            "{V} is {P}'s mobile.",
            "Phone: {V}",
            "You can reach the front desk on {V}, or email us.",
            "Her number ({V}) is on the form.",
            "Tel. {V}; fax not available.",
        ),
    },
    "CN_ID": {
        "zh": (
            "身份证号{V}。",
            "{P}的身份证号码是{V}",
            "证件号：{V}，请核对。",
            "{V}为申请人身份证号",
            "（身份证：{V}）",
            "请在表格里填写身份证{V}并签字。",
        ),
        "en": (
            "ID number: {V}",
            "{P}'s resident ID is {V}.",
            "{V} was entered as the Chinese ID.",
            "Passport or ID ({V}) required.",
            "Her ID card reads {V}, issued in Beijing.",
        ),
    },
    "BANK_CARD": {
        "zh": (
            "请转账到卡号{V}。",
            "银行卡：{V}",
            "{V}是{P}的工资卡",
            "卡号{V}，开户行招商银行。",
            "退款将打入（{V}）",
        ),
        "en": (
            "Card {V} expires soon.",
            "{V} was charged twice.",
            "Please refund to card number {V}",
            "Pay with {V}, exp 09/27.",
            "Card: {V}; holder {P}.",
        ),
    },
    "IP": {
        "zh": (
            "服务器{V}又宕机了。",
            "登录地址：{V}",
            "{V}的访问量异常",
            "请把白名单改成{V}，谢谢。",
            "来源IP（{V}）已封禁",
        ),
        "en": (
            "The server at {V} is down again.",
            "{V} keeps timing out.",
            "Allow traffic from {V}",
            "Logged in from {V}, then from a new device.",
            "Blocked host ({V}) yesterday.",
        ),
    },
    "URL_CREDENTIALS": {
        "zh": ("数据库连接串是{V}，不要外传。", "{V}", "部署地址：{V}", "用{V}拉取代码"),
        "en": (
            "Deploy with {V} today.",
            "{V}",
            "The connection string {V} is in the old config.",
            "Clone it from {V}.",
        ),
    },
    "SECRET": {
        "zh": ("测试环境{N}{V}，用完请轮换。", "{N}{V}", "把{N}{V}写进配置文件了。"),
        "en": (
            "The staging key is {N}{V} for now.",
            "{N}{V}",
            "Someone pasted {N}{V} into the chat.",
            "Rotate {N}{V} before Friday.",
        ),
    },
    "PERSON": {
        "zh": (
            "{V}明天来公司面试。",
            "请联系{V}。",
            "我和{V}是大学同学",
            "项目负责人：{V}",
            "{V}说他下周去出差，",
            "昨天{V}给我打了电话。",
            "「{V}」已签收",
            "经理{V}批准了这笔报销。",
            "感谢{V}老师的帮助！",
        ),
        "en": (
            "{V} will join the call at noon.",
            "Please ask {V}.",
            "I met {V} at the conference",
            "Project lead: {V}",
            "Thanks to {V}, the release shipped on time.",
            "Yesterday {V} called about the invoice.",
            "Signed, {V}",
            "Dr. {V} reviewed the results.",
        ),
    },
    "ADDRESS": {
        "zh": (
            "{P}住在{V}。",
            "收货地址：{V}",
            "{V}",
            "请寄到{V}，谢谢！",
            "公司在{V}附近",
            "{V}的快递到了",
            "家庭住址（{V}）",
        ),
        "en": (
            "{P} lives at {V}.",
            "Shipping address: {V}",
            "{V}",
            "Please send it to {V}.",
            "Our office moved to {V} last month.",
            "Deliver to {V}, leave at the door.",
        ),
    },
    "ORG": {
        "zh": (
            "{V}今天发布了年报。",
            "我在{V}工作",
            "{P}是{V}的工程师。",
            "合同由{V}签署",
            "（供应商：{V}）",
            "感谢{V}的支持！",
        ),
        "en": (
            "{V} announced its results today.",
            "I work at {V}",
            "{P} is an engineer at {V}.",
            "The contract was signed by {V}.",
            "(supplier: {V})",
            "Thanks to {V} for the support!",
        ),
    },
}
FULLWIDTH_TYPES = ("PHONE", "CN_ID", "BANK_CARD", "IP", "ADDRESS")


def _value(kind: str, rng: random.Random, lang: str) -> tuple[str, str]:
    simple: dict[str, Callable[[random.Random], tuple[str, str]]] = {
        "EMAIL": email,
        "CN_ID": cn_id,
        "BANK_CARD": bank_card,
        "IP": ip,
        "URL_CREDENTIALS": url_credentials,
    }
    if kind in simple:
        return simple[kind](rng)
    return {"PHONE": phone, "PERSON": person, "ADDRESS": address, "ORG": org}[kind](rng, lang)


def sample(kind: str, rng: random.Random, lang: str | None = None) -> Sample:
    """One sentence with a value of ``kind`` (and, in some templates, a person's name)."""
    lang = lang or pick(rng, ("zh", "en"))
    template = pick(rng, TEMPLATES[kind][lang])
    slots: dict[str, tuple[str, str, str, str]] = {}
    if kind == "SECRET":
        name, value, sub = secret(rng)
        slots["N"] = ("", name, "plain", "")
    else:
        value, sub = _value(kind, rng, lang)
    text, variant = vary(value, rng, kind in FULLWIDTH_TYPES)
    slots["V"] = (kind, text, variant, sub)
    if "{P}" in template:
        name, name_kind = person(rng, lang)
        slots["P"] = ("PERSON", name, "plain", name_kind)
    sentence, values = fill(template, slots)
    return Sample(sentence, lang, [v for v in values if v.type])


# ---------------------------------------------------------------- look-alikes: text that is not personal data


def _bad_id(rng: random.Random) -> str:
    body, _ = id_body(rng)
    good = id_check(body)
    return id_format(body + pick(rng, [c for c in "0123456789X" if c != good]), rng)


def _bad_card(rng: random.Random) -> str:
    body, _ = card_body(rng)
    good = luhn_check(body)
    return card_format(body + pick(rng, [c for c in string.digits if c != good]), rng)


def _date(rng: random.Random, lang: str) -> str:
    y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    months = (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    )
    if lang == "zh":
        return pick(
            rng,
            (
                f"{y}年{m}月{d}日",
                f"{y}-{m:02d}-{d:02d}",
                f"{y}/{m:02d}/{d:02d}",
                f"{y}{m:02d}{d:02d}",
                f"{y}.{m:02d}.{d:02d}",
            ),
        )
    return pick(
        rng,
        (
            f"{months[m - 1]} {d}, {y}",
            f"{d:02d}/{m:02d}/{y}",
            f"{y}-{m:02d}-{d:02d}",
            f"{d} {months[m - 1]} {y}",
            f"{y}-{m:02d}-{d:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        ),
    )


def _price(rng: random.Random, lang: str) -> str:
    amount = rng.randint(1, 9_999_999) / 100
    if lang == "zh":
        return pick(rng, (f"¥{amount:,.2f}", f"{int(amount)}元", f"{amount:.2f}元", f"人民币{int(amount):,}元"))
    return pick(rng, (f"${amount:,.2f}", f"USD {amount:,.2f}", f"£{amount:,.2f}", f"{amount:,.2f} EUR"))


def _order(rng: random.Random, lang: str) -> str:
    y, m, d = rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)
    return pick(
        rng,
        (
            f"{y}{m:02d}{d:02d}{digits(rng, rng.randint(6, 11))}",
            f"ORD-{y}-{digits(rng, 6)}",
            f"PO{digits(rng, 8)}",
            f"#{digits(rng, 7)}",
            f"{y}{m:02d}{d:02d}-{digits(rng, 6)}-{digits(rng, 4)}",
        ),
    )


def _tracking(rng: random.Random, lang: str) -> str:
    return pick(
        rng,
        (
            f"SF{digits(rng, 13)}",
            f"YT{digits(rng, 13)}",
            f"JD{digits(rng, 13)}",
            f"EA{digits(rng, 9)}CN",
            f"1Z{_token(rng, 6, string.ascii_uppercase + string.digits)}{digits(rng, 10)}",
            " ".join(["9400", *(digits(rng, 4) for _ in range(4)), digits(rng, 2)]),
            f"75{digits(rng, 12)}",
            f"JT{digits(rng, 13)}",
        ),
    )


LOOKALIKE_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "date": {
        "zh": ("会议定在{V}召开。", "{V}之前提交材料", "截止日期：{V}"),
        "en": ("The meeting is on {V}.", "Submit it before {V}", "Deadline: {V}."),
    },
    "price": {
        "zh": ("这台电脑售价{V}。", "合计：{V}", "{V}包邮"),
        "en": ("It costs {V} now.", "Total: {V}", "{V} incl. tax."),
    },
    "order_number": {
        "zh": ("订单号{V}已发货。", "您的订单（{V}）正在处理", "单号：{V}"),
        "en": ("Order {V} has shipped.", "Your order ({V}) is being processed.", "Ref: {V}"),
    },
    "tracking_number": {
        "zh": ("快递单号{V}，请查收。", "运单号：{V}", "{V}已到达分拣中心"),
        "en": ("Tracking number {V}.", "Parcel {V} is out for delivery.", "{V} was delivered at 10am"),
    },
    "invalid_cn_id": {"zh": ("身份证号{V}。", "证件号：{V}，请核对。"), "en": ("ID number: {V}", "The form says {V}.")},
    "invalid_card": {"zh": ("卡号{V}。", "银行卡：{V}"), "en": ("Card {V} was declined.", "Card number: {V}")},
}
# Whole sentences with a span {V} that is not personal data.
_WORDS_EN = {
    "capitalised_word": (
        ("In {V} the team ships the new release.", "May"),
        ("{V} we begin?", "May"),
        ("{V} you send the file?", "Will"),
        ("The {V} of Rights is a famous document.", "Bill"),
        ("{V} is the busiest day for support.", "Monday"),
        ("We close early on {V} Eve.", "Christmas"),
        ("The {V} Wall is visible from the hills.", "Great"),
        ("{V} Street Journal ran the story.", "Wall"),
        ("Turn left at the {V} sign.", "Stop"),
        ("{V} and Order is on tonight.", "Law"),
    ),
    "company_word": (
        ("{V} announced a new phone today.", "Apple"),
        ("{V} released an update to Windows.", "Microsoft"),
        ("The parcel came from {V} yesterday.", "Amazon"),
        ("{V} Maps shows a shorter route.", "Google"),
        ("We run the jobs on {V} servers.", "Linux"),
    ),
    "lone_city": (
        ("I flew to {V} last week.", "London"),
        ("The train to {V} leaves at nine.", "Paris"),
        ("{V} is hot in summer.", "Tokyo"),
        ("She grew up near {V}.", "Boston"),
        ("Prices in {V} went up.", "Shanghai"),
        ("We met in {V}.", "Berlin"),
    ),
}
_WORDS_ZH = {
    "capitalised_word": (
        ("这件事{V}办。", "马上"),
        ("我们{V}重视这个问题。", "高度"),
        ("{V}价格又涨了。", "黄金"),
        ("今天大家都很{V}。", "高兴"),
        ("{V}快乐！", "新年"),
        ("这个{V}很大。", "王国"),
        ("{V}发展很快。", "文化"),
        ("请{V}阅读说明。", "仔细"),
        ("{V}已经成熟了。", "李子"),
    ),
    "lone_city": (
        ("我明天去{V}。", "上海"),
        ("{V}的冬天很冷。", "北京"),
        ("他在{V}读书", "杭州"),
        ("{V}今天下雨了。", "成都"),
        ("飞往{V}的航班延误了", "深圳"),
        ("我们在{V}见过面。", "南京"),
    ),
    "landmark": (
        ("周末去{V}玩。", "长城"),
        ("{V}的游客很多。", "故宫"),
        ("我们在{V}边散步", "西湖"),
        ("{V}很壮观", "长江"),
        ("他拍了一张{V}的照片。", "天安门"),
        ("{V}是著名景点。", "黄山"),
    ),
}
LOOKALIKE_KINDS = (*LOOKALIKE_TEMPLATES, "capitalised_word", "company_word", "lone_city", "landmark")
_LOOKALIKE_VALUES: dict[str, Callable[[random.Random, str], str]] = {
    "date": _date,
    "price": _price,
    "order_number": _order,
    "tracking_number": _tracking,
    "invalid_cn_id": lambda rng, lang: _bad_id(rng),
    "invalid_card": lambda rng, lang: _bad_card(rng),
}


def lookalike(kind: str, rng: random.Random) -> Sample:
    """One sentence whose marked span (type "LOOKALIKE") is not personal data."""
    if kind in LOOKALIKE_TEMPLATES:
        lang = pick(rng, ("zh", "en"))
        value = _LOOKALIKE_VALUES[kind](rng, lang)
        template = pick(rng, LOOKALIKE_TEMPLATES[kind][lang])
    else:
        langs = [lang for lang, table in (("zh", _WORDS_ZH), ("en", _WORDS_EN)) if kind in table]
        lang = pick(rng, langs)
        template, value = pick(rng, (_WORDS_ZH if lang == "zh" else _WORDS_EN)[kind])
    text, values = fill(template, {"V": ("LOOKALIKE", value, "plain", kind)})
    return Sample(text, lang, values)


# ---------------------------------------------------------------- ordinary prose, for latency texts

PROSE = {
    "zh": (
        "今天天气很好，我们去公园散步吧。",
        "季度报告周五截止，请大家核对数据。",
        "这个函数的时间复杂度是线性的。",
        "会议纪要：预算已批准，招聘暂停，下月再议。",
        "请在系统里提交报销单，并附上发票。",
        "新版本修复了三个已知问题。",
        "如果服务器重启后仍然报错，请查看日志。",
        "图书馆周末开放到晚上九点。",
        "春天来了，河边的柳树都绿了。",
        "我们计划下周发布测试版，欢迎大家试用。",
    ),
    "en": (
        "The quarterly report is due on Friday; please review the figures.",
        "Restart the worker if the queue stalls.",
        "Meeting notes: budget approved, hiring paused, next review in May.",
        "The library is open until nine on weekends.",
        "How do I kill a stuck Python process?",
        "The new release fixes three known issues.",
        "If the error persists after a restart, check the logs.",
        "Spring is here and the river path is green again.",
        "We plan to ship the beta next week; feedback is welcome.",
        "The function runs in linear time.",
    ),
}
PII_KINDS = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IP", "URL_CREDENTIALS", "SECRET", "PERSON", "ADDRESS", "ORG")


def prose(lang: str, size: int, rng: random.Random, pii_share: float = 0.3) -> str:
    """``size`` characters of ordinary sentences in ``lang`` (zh, en or mixed), ``pii_share`` of
    them with a personal-data value in them. English sentences end in a space, Chinese ones in
    punctuation (。 added where a template ends on its value)."""
    pieces, length = [], 0
    while length < size:
        language = pick(rng, ("zh", "en")) if lang == "mixed" else lang
        if rng.random() < pii_share:
            piece = sample(pick(rng, PII_KINDS), rng, language).text
        else:
            piece = pick(rng, PROSE[language])
        if language == "en":
            piece += " "
        elif piece[-1] not in "。！？；，）」":
            piece += "。"
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)[:size]
