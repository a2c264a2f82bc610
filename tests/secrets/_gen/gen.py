#!/usr/bin/env python3
"""Writes the state-secret test corpus (tests/secrets/corpus/) and its
expectations (tests/secrets/expected.tsv): the same official document,
stamped MẬT, TỐI MẬT or TUYỆT MẬT and unstamped, in every encoding and
container the scanner reads, plus hard negatives and damaged inputs.
Python 3 standard library only; the output is byte-for-byte reproducible
(fixed zip timestamps, fixed MIME boundaries, no randomness).

    python3 tests/secrets/_gen/gen.py            # rewrite the corpus
    python3 tests/secrets/_gen/gen.py --bench N  # also write N MiB of
                                                 # unmarked documents to
                                                 # target/secrets-bench/

Every document also carries PHRASES (below): the privacy test searches all
output for them.
"""
import gzip
import io
import os
import struct
import sys
import unicodedata
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "corpus")
sys.path.insert(0, os.path.join(ROOT, "..", "detect", "_gen"))
import tcpframes  # noqa: E402

LEVELS = {"mat": "MẬT", "toi-mat": "TỐI MẬT", "tuyet-mat": "TUYỆT MẬT"}

# Document phrases: they must never appear in any output.
PHRASES = [
    "Phương án phòng thủ khu vực Hồng Lĩnh",
    "đồng chí Nguyễn Văn Thước",
    "kho vũ khí số 7 tại xã Đức Bồng",
]

HEADER = [
    "ỦY BAN NHÂN DÂN TỈNH HÀ TĨNH",
    "Số: 127/BC-UBND",
    "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
    "Độc lập - Tự do - Hạnh phúc",
]
BODY = [
    "BÁO CÁO",
    "Về " + PHRASES[0].lower() + " năm 2025",
    "Thực hiện chỉ đạo của " + PHRASES[1] + ", Ủy ban báo cáo như sau:",
    "1. Tình hình chung: bảo đảm an ninh tại " + PHRASES[2] + ".",
    "2. Các đơn vị giữ bí mật nhà nước theo quy định; mật khẩu hệ thống được thay định kỳ.",
    "Nơi nhận:",
    "- Như trên;",
    "- Lưu: VT.",
]


def doc_lines(level):
    """The document as lines; the stamp under the header when `level`."""
    lines = list(HEADER)
    if level:
        lines.append(LEVELS[level])
    return lines + BODY


HARD_NEGATIVES = {
    "neg-bao-mat": HEADER + ["BẢO MẬT", "Quy chế bảo mật thông tin, mật khẩu và bí mật công tác."] + BODY,
    "neg-mat-khau": HEADER + ["MẬT KHẨU", "Đổi MẬT KHẨU hộp thư công vụ định kỳ."] + BODY,
    "neg-toi-mat-thu": ["Truyện ngắn", "TỐI MẬT THƯ", "Đêm ấy, tôi nhận được một bức TỐI MẬT THƯ từ người bạn cũ.",
                        "Mật ong rừng và bí mật của làng."] + BODY[1:4],
    "neg-mat-do": HEADER + ["MẬT ĐỘ DÂN SỐ", "Mật độ dân số toàn tỉnh năm 2024."] + BODY,
    "neg-bi-mat": HEADER + ["BÍ MẬT", "Giữ bí mật nhà nước là trách nhiệm của mọi cán bộ."] + BODY,
    "neg-mat-ong": ["MẬT ONG", "Mật ong rừng U Minh", "mật ong nguyên chất, bảo mật công thức"] + BODY[1:4],
    "neg-inline": HEADER + ["Tài liệu này không phải TUYỆT MẬT, không phải TỐI MẬT, cũng không MẬT theo quy định."] + BODY,
}

# ---------------------------------------------------------------- encodings

TCVN_HIGH = [int(x, 16) for x in """
00A0 0102 00C2 00CA 00D4 01A0 01AF 0110 0103 00E2 00EA 00F4 01A1 01B0 0111 1EB0
0300 0309 0303 0301 0323 00E0 1EA3 00E3 00E1 1EA1 1EB2 1EB1 1EB3 1EB5 1EAF 1EB4
1EAE 1EA6 1EA8 1EAA 1EA4 1EC0 1EB7 1EA7 1EA9 1EAB 1EA5 1EAD 00E8 1EC2 1EBB 1EBD
00E9 1EB9 1EC1 1EC3 1EC5 1EBF 1EC7 00EC 1EC9 1EC4 1EBE 1ED2 0129 00ED 1ECB 00F2
1ED4 1ECF 00F5 00F3 1ECD 1ED3 1ED5 1ED7 1ED1 1ED9 1EDD 1EDF 1EE1 1EDB 1EE3 00F9
1ED6 1EE7 0169 00FA 1EE5 1EEB 1EED 1EEF 1EE9 1EF1 1EF3 1EF7 1EF9 00FD 1EF5 1ED0""".split()]
VISCII_HIGH = [int(x, 16) for x in """
1EA0 1EAE 1EB0 1EB6 1EA4 1EA6 1EA8 1EAC 1EBC 1EB8 1EBE 1EC0 1EC2 1EC4 1EC6 1ED0
1ED2 1ED4 1ED6 1ED8 1EE2 1EDA 1EDC 1EDE 1ECA 1ECE 1ECC 1EC8 1EE6 0168 1EE4 1EF2
00D5 1EAF 1EB1 1EB7 1EA5 1EA7 1EA9 1EAD 1EBD 1EB9 1EBF 1EC1 1EC3 1EC5 1EC7 1ED1
1ED3 1ED5 1ED7 1EE0 01A0 1ED9 1EDD 1EDF 1ECB 1EF0 1EE8 1EEA 1EEC 01A1 1EDB 01AF
00C0 00C1 00C2 00C3 1EA2 0102 1EB3 1EB5 00C8 00C9 00CA 1EBA 00CC 00CD 0128 1EF3
0110 1EE9 00D2 00D3 00D4 1EA1 1EF7 1EEB 1EED 00D9 00DA 1EF9 1EF5 00DD 1EE1 01B0
00E0 00E1 00E2 00E3 1EA3 0103 1EEF 1EAB 00E8 00E9 00EA 1EBB 00EC 00ED 0129 1EC9
0111 1EF1 00F2 00F3 00F4 00F5 1ECF 1ECD 1EE5 00F9 00FA 0169 1EE7 00FD 1EE3 1EEE""".split()]
VISCII_LOW = {0x1EB2: 0x02, 0x1EB4: 0x05, 0x1EAA: 0x06, 0x1EF6: 0x14, 0x1EF8: 0x19, 0x1EF4: 0x1E}

GRAVE, ACUTE, CIRC, TILDE, BREVE, HOOK, HORN, DOT = "\u0300\u0301\u0302\u0303\u0306\u0309\u031b\u0323"
TONES = GRAVE + ACUTE + TILDE + HOOK + DOT
VNI_LETTERS = {"ơ": 0xF4, "Ơ": 0xD4, "ư": 0xF6, "Ư": 0xD6, "đ": 0xF1, "Đ": 0xD1, "í": 0xED, "Í": 0xCD,
               "ì": 0xEC, "Ì": 0xCC, "ỉ": 0xE6, "Ỉ": 0xC6, "ĩ": 0xF3, "Ĩ": 0xD3, "ị": 0xF2, "Ị": 0xD2,
               "ỵ": 0xEE, "Ỵ": 0xCE}
VNI_MODS = {ACUTE: 0xF9, GRAVE: 0xF8, HOOK: 0xFB, TILDE: 0xF5, DOT: 0xEF, CIRC: 0xE2, CIRC + ACUTE: 0xE1,
            CIRC + GRAVE: 0xE0, CIRC + HOOK: 0xE5, CIRC + TILDE: 0xE3, CIRC + DOT: 0xE4, BREVE: 0xEA,
            BREVE + ACUTE: 0xE9, BREVE + GRAVE: 0xE8, BREVE + HOOK: 0xFA, BREVE + TILDE: 0xFC, BREVE + DOT: 0xEB}
VIQR = {CIRC: "^", BREVE: "(", HORN: "+", ACUTE: "'", GRAVE: "`", HOOK: "?", TILDE: "~", DOT: "."}


def split(c):
    """Base letter and marks of a character, vowel mark first."""
    d = unicodedata.normalize("NFD", c)
    base, marks = d[0], sorted(d[1:], key=lambda m: m not in (CIRC, BREVE, HORN))
    return base, "".join(marks)


def enc_tcvn3(text):
    out = bytearray()
    for c in unicodedata.normalize("NFC", text):
        if ord(c) < 0x80:
            out.append(ord(c))
            continue
        t = c if c in "ĂÂÊÔƠƯĐ" else c.lower()
        out.append(0xA0 + TCVN_HIGH.index(ord(t)) if ord(t) in TCVN_HIGH else ord("?"))
    return bytes(out)


def enc_viscii(text):
    out = bytearray()
    for c in unicodedata.normalize("NFC", text):
        o = ord(c)
        out.append(o if o < 0x80 else 0x80 + VISCII_HIGH.index(o) if o in VISCII_HIGH else VISCII_LOW.get(o, 0x3F))
    return bytes(out)


def enc_vni(text):
    out = bytearray()
    for c in unicodedata.normalize("NFC", text):
        if ord(c) < 0x80:
            out.append(ord(c))
            continue
        if c in VNI_LETTERS:
            out.append(VNI_LETTERS[c])
            continue
        base, marks = split(c)
        if marks.startswith(HORN):
            base, marks = {"o": "ơ", "O": "Ơ", "u": "ư", "U": "Ư"}[base], marks[1:]
        out += enc_vni(base)
        if marks:
            b = VNI_MODS[marks]
            out.append(b - 0x20 if base.isupper() else b)
    return bytes(out)


def enc_viqr(text):
    out = []
    for c in unicodedata.normalize("NFC", text):
        if c in "Đđ":
            out.append("DD" if c == "Đ" else "dd")
            continue
        base, marks = split(c)
        out.append(base + "".join(VIQR.get(m, "") for m in marks))
    return "".join(out).encode("ascii", "replace")


def enc_cp1258(text):
    out = bytearray()
    for c in unicodedata.normalize("NFC", text):
        try:
            out += c.encode("cp1258")
            continue
        except UnicodeEncodeError:
            pass
        d = unicodedata.normalize("NFD", c)
        tone = "".join(m for m in d[1:] if m in TONES)
        base = unicodedata.normalize("NFC", "".join(m for m in d if m not in TONES))
        out += base.encode("cp1258", "replace") + tone.encode("cp1258")
    return bytes(out)


def encode(text, enc):
    if enc == "utf-8":
        return unicodedata.normalize("NFC", text).encode()
    if enc == "utf-8-nfd":
        return unicodedata.normalize("NFD", text).encode()
    if enc == "utf-16le":
        return b"\xff\xfe" + unicodedata.normalize("NFC", text).encode("utf-16-le")
    if enc == "utf-16be":
        return b"\xfe\xff" + unicodedata.normalize("NFC", text).encode("utf-16-be")
    return {"windows-1258": enc_cp1258, "tcvn3": enc_tcvn3, "vni": enc_vni, "viqr": enc_viqr,
            "viscii": enc_viscii}[enc](text)


def carried(text, enc):
    """A legacy-font run as Word stores it: each byte as its cp1252 char."""
    return encode(text, enc).decode("cp1252", "replace")


ENCODINGS = ["utf-8", "utf-8-nfd", "windows-1258", "tcvn3", "vni", "viqr", "viscii", "utf-16le", "utf-16be"]

# ---------------------------------------------------------------- containers

DATE = (2024, 5, 6, 7, 8, 10)


def zip_bytes(entries, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, DATE)
            info.compress_type = zipfile.ZIP_STORED if name == "mimetype" else compression
            z.writestr(info, data)
    return buf.getvalue()


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def w_par(text, split_runs=False):
    if split_runs and len(text) > 3:
        h = len(text) - 2
        runs = f'<w:r><w:t xml:space="preserve">{esc(text[:h])}</w:t></w:r><w:proofErr w:type="spellStart"/>' \
               f'<w:r><w:t>{esc(text[h:])}</w:t></w:r>'
    else:
        runs = f'<w:r><w:t xml:space="preserve">{esc(text)}</w:t></w:r>'
    return f"<w:p><w:pPr><w:jc w:val=\"center\"/></w:pPr>{runs}</w:p>"


def w_par_caps(text, how):
    """A paragraph whose text Word shows in capitals: `direct` (All Caps on
    the run), `style` (a paragraph style with All Caps), `off` (All Caps
    explicitly off: shown as stored)."""
    rpr = {"direct": "<w:rPr><w:caps/></w:rPr>", "style": "", "off": '<w:rPr><w:caps w:val="0"/></w:rPr>'}[how]
    ppr = '<w:pStyle w:val="DoMat"/>' if how == "style" else ""
    return f'<w:p><w:pPr>{ppr}<w:jc w:val="center"/></w:pPr><w:r>{rpr}<w:t xml:space="preserve">{esc(text)}</w:t>' \
           '</w:r></w:p>'


# a paragraph style in All Caps, based on one that is not
CAPS_STYLES = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:styles {W}>'
               '<w:style w:type="paragraph" w:styleId="Stamp"><w:name w:val="Stamp"/><w:rPr><w:b/><w:caps/>'
               '</w:rPr></w:style><w:style w:type="paragraph" w:styleId="DoMat"><w:name w:val="Do mat"/>'
               '<w:basedOn w:val="Stamp"/><w:rPr><w:sz w:val="28"/></w:rPr></w:style></w:styles>')


def docx(level, where="body", legacy=None):
    stamp = LEVELS[level] if level else None
    if stamp and legacy:
        stamp = carried(stamp, legacy)
    body_lines = HEADER + BODY
    pars = [w_par(t) for t in body_lines]
    header = [w_par("ỦY BAN NHÂN DÂN TỈNH HÀ TĨNH")]
    comments = []
    if stamp:
        if where == "body":
            pars.insert(4, w_par(stamp))
        elif where == "split":
            pars.insert(4, w_par(stamp, split_runs=True))
        elif where == "header":
            header.append(w_par(stamp))
        elif where == "textbox":
            pars.insert(0, '<w:p><w:r><w:pict><v:shape xmlns:v="urn:schemas-microsoft-com:vml"><v:textbox>'
                           f'<w:txbxContent>{w_par(stamp)}</w:txbxContent></v:textbox></v:shape></w:pict></w:r></w:p>')
        elif where == "comment":
            comments.append(f'<w:comment w:id="0" w:author="VT">{w_par(stamp)}</w:comment>')
        elif where == "caps":
            # stored in lowercase, shown in capitals by All Caps on the run
            pars.insert(4, w_par_caps(stamp.lower(), "direct"))
        elif where == "caps-style":
            # stored as "Tuyệt mật", shown in capitals by its paragraph style
            pars.insert(4, w_par_caps(stamp.capitalize(), "style"))
    ct = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/'
          'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
          'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override '
          'PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
          'wordprocessingml.document.main+xml"/></Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
            'openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
            '</Relationships>')
    doc = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {W}><w:body>{"".join(pars)}' \
          '</w:body></w:document>'
    hdr = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:hdr {W}>{"".join(header)}</w:hdr>'
    com = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:comments {W}>{"".join(comments)}</w:comments>'
    styles = [("word/styles.xml", CAPS_STYLES)] if where.startswith("caps") else []
    return zip_bytes([("[Content_Types].xml", ct), ("_rels/.rels", rels), ("word/document.xml", doc),
                      ("word/header1.xml", hdr), ("word/comments.xml", com)] + styles +
                     [("word/media/image1.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)])


def docx_long(level):
    """A longer report (about 90 KB): a photo that does not compress
    (deterministic noise) stored before the text, 60 paragraphs of prose,
    the stamp in the page footer. Big enough that SMB moves it in several
    reads and TCP in many segments."""
    x, noise = 12345, bytearray()
    while len(noise) < 80_000:
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        noise += (x >> 16).to_bytes(6, "little")
    lines = prose(60, 7)
    doc = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {W}><w:body>' \
          f'{"".join(w_par(t) for t in lines)}</w:body></w:document>'
    ftr = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:ftr {W}>' \
          f'{w_par(LEVELS[level]) if level else ""}</w:ftr>'
    return zip_bytes([("[Content_Types].xml", "<Types/>"), ("word/media/image1.jpeg", bytes(noise)),
                      ("word/document.xml", doc), ("word/footer1.xml", ftr)])


def xlsx(level):
    cells = doc_lines(level)
    sst = "".join(f"<si><t>{esc(t)}</t></si>" for t in cells)
    rows = "".join(f'<row r="{i + 1}"><c r="A{i + 1}" t="s"><v>{i}</v></c></row>' for i in range(len(cells)))
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    return zip_bytes([
        ("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
        ("xl/workbook.xml", f'<?xml version="1.0"?><workbook {ns}><sheets><sheet name="S" sheetId="1"/></sheets></workbook>'),
        ("xl/sharedStrings.xml", f'<?xml version="1.0"?><sst {ns} count="{len(cells)}">{sst}</sst>'),
        ("xl/worksheets/sheet1.xml", f'<?xml version="1.0"?><worksheet {ns}><sheetData>{rows}</sheetData></worksheet>'),
    ])


def pptx(level):
    ns = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" ' \
         'xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"'
    shapes = "".join(f"<p:sp><p:txBody><a:p><a:r><a:t>{esc(t)}</a:t></a:r></a:p></p:txBody></p:sp>"
                     for t in doc_lines(level))
    return zip_bytes([
        ("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
        ("ppt/presentation.xml", f'<?xml version="1.0"?><p:presentation {ns}/>'),
        ("ppt/slides/slide1.xml", f'<?xml version="1.0"?><p:sld {ns}><p:cSld><p:spTree>{shapes}</p:spTree></p:cSld></p:sld>'),
    ])


ODF_NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
          'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"')


def odt_caps(lines):
    """An ODT of (text, style) paragraphs; styles: T1 a span style in
    uppercase, P1 a paragraph style in uppercase through its parent
    (styles.xml), N1 a span style that sets no transform."""
    pars = []
    for t, st in lines:
        if st == "span":
            pars.append(f'<text:p><text:span text:style-name="T1">{esc(t)}</text:span></text:p>')
        elif st == "para":
            pars.append(f'<text:p text:style-name="P1">{esc(t)}</text:p>')
        elif st == "none":
            pars.append(f'<text:p text:style-name="P1"><text:span text:style-name="N1">{esc(t)}</text:span></text:p>')
        else:
            pars.append(f"<text:p>{esc(t)}</text:p>")
    auto = ('<office:automatic-styles><style:style style:name="T1" style:family="text"><style:text-properties '
            'fo:text-transform="uppercase" fo:font-weight="bold"/></style:style><style:style style:name="P1" '
            'style:family="paragraph" style:parent-style-name="Stamp"><style:paragraph-properties '
            'fo:text-align="center"/></style:style><style:style style:name="N1" style:family="text">'
            '<style:text-properties fo:text-transform="none"/></style:style></office:automatic-styles>')
    content = f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS}>{auto}<office:body>' \
              f'<office:text>{"".join(pars)}</office:text></office:body></office:document-content>'
    styles = f'<?xml version="1.0" encoding="UTF-8"?><office:document-styles {ODF_NS}><office:styles>' \
             '<style:style style:name="Stamp" style:family="paragraph"><style:text-properties ' \
             'fo:text-transform="uppercase"/></style:style></office:styles></office:document-styles>'
    return zip_bytes([("mimetype", "application/vnd.oasis.opendocument.text"), ("content.xml", content),
                      ("styles.xml", styles)])


def odf(level, kind):
    ns = 'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" ' \
         'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" ' \
         'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
    if kind == "odt":
        mt = "application/vnd.oasis.opendocument.text"
        # the stamp goes in the page header (styles.xml), the rest in content.xml
        body = "".join(f"<text:p>{esc(t)}</text:p>" for t in HEADER + BODY)
        content = f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns}><office:body><office:text>' \
                  f'{body}</office:text></office:body></office:document-content>'
        hdr = f"<text:p>{esc(LEVELS[level])}</text:p>" if level else ""
        styles = f'<?xml version="1.0" encoding="UTF-8"?><office:document-styles {ns}><office:master-styles>' \
                 f'<style:master-page xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"><style:header>' \
                 f'{hdr}</style:header></style:master-page></office:master-styles></office:document-styles>'
        return zip_bytes([("mimetype", mt), ("content.xml", content), ("styles.xml", styles)])
    mt = "application/vnd.oasis.opendocument.spreadsheet"
    rows = "".join(f"<table:table-row><table:table-cell><text:p>{esc(t)}</text:p></table:table-cell></table:table-row>"
                   for t in doc_lines(level))
    content = f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns}><office:body><office:spreadsheet>' \
              f'<table:table>{rows}</table:table></office:spreadsheet></office:body></office:document-content>'
    return zip_bytes([("mimetype", mt), ("content.xml", content)])


def rtf(level, mode):
    """mode: `unicode` (\\uN), `cp1258` (\\'hh in code page 1258), `tcvn3`
    (\\'hh in a .VnTimeH font)."""
    out = ["{\\rtf1\\ansi\\ansicpg1258\\deff0{\\fonttbl{\\f0\\froman Times New Roman;}{\\f1 .VnTimeH;}}"
           "{\\*\\generator gen.py;}{\\info{\\title x}}\\uc1"]
    for line in doc_lines(level):
        if mode == "unicode":
            s = "".join(c if ord(c) < 0x80 else "\\u%d?" % (ord(c) if ord(c) < 0x8000 else ord(c) - 0x10000)
                        for c in unicodedata.normalize("NFC", line))
        else:
            raw = enc_cp1258(line) if mode == "cp1258" else enc_tcvn3(line)
            s = ("\\f1 " if mode == "tcvn3" else "") + "".join(
                chr(b) if 0x20 <= b < 0x80 and chr(b) not in "\\{}" else "\\'%02x" % b for b in raw)
        out.append("\\pard\\qc " + s + "\\par\n")
    out.append("}")
    return "".join(out).encode("ascii")


def pdf_bytes(objects):
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for o in offsets:
        out += b"%010d 00000 n \n" % o
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(data, flate):
    if flate:
        data = zlib.compress(data)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def pdf(level, mode):
    """mode: `cid` (Identity-H font with a ToUnicode CMap, compressed
    content: what Word's PDF export writes) or `tcvn3` (literal strings in
    a .VnTime font, uncompressed)."""
    lines = doc_lines(level)
    if mode == "cid":
        chars = sorted(set("".join(unicodedata.normalize("NFC", l) for l in lines)))
        gid = {c: i + 3 for i, c in enumerate(chars)}
        cmap = ["/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
                "1 begincodespacerange <0000> <FFFF> endcodespacerange", "%d beginbfchar" % len(chars)]
        cmap += ["<%04X> <%04X>" % (gid[c], ord(c)) for c in chars]
        cmap += ["endbfchar", "endcmap CMapName currentdict /CMap defineresource pop end end"]
        content = [b"BT /F1 12 Tf 72 800 Td 14 TL"]
        for l in lines:
            content.append(b"<" + "".join("%04X" % gid[c] for c in unicodedata.normalize("NFC", l)).encode() + b"> Tj T*")
        content.append(b"ET BT /F2 8 Tf 72 40 Td (Trang 1) Tj ET")
        font = b"<< /Type /Font /Subtype /Type0 /BaseFont /TimesNewRoman /Encoding /Identity-H /ToUnicode 6 0 R >>"
        objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 5 0 R /F2 7 0 R >> >> /Contents 4 0 R >>",
                stream(b"\n".join(content), True), font, stream("\n".join(cmap).encode(), True),
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
        return pdf_bytes(objs)
    content = [b"BT /F1 12 Tf 72 800 Td 14 TL"]
    for l in lines:
        raw = enc_tcvn3(l).replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        content.append(b"(" + raw + b") Tj T*")
    content.append(b"ET")
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
            stream(b"\n".join(content), False), b"<< /Type /Font /Subtype /TrueType /BaseFont /.VnTime >>"]
    return pdf_bytes(objs)


def cfb(streams_text, kind):
    """A stand-in for a legacy binary Office file: the OLE signature, the
    directory names, and the text runs as Word 97 / Excel 97 keep them
    (8-bit or UTF-16LE, paragraphs ended by CR) between binary records."""
    name = {"doc": "WordDocument", "xls": "Workbook"}[kind]
    out = bytearray(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    out += name.encode("utf-16-le") + bytes(64 - 2 * len(name))
    out += bytes(range(0, 40)) * 3
    for run in streams_text:
        out += b"\x00\x01\x02" + run + b"\x00\x00\x03\x04"
    out += bytes(512 - len(out) % 512)
    return bytes(out)


def cfb_doc(level, mode):
    lines = doc_lines(level)
    if mode == "utf16":
        run = "\r".join(unicodedata.normalize("NFC", l) for l in lines).encode("utf-16-le") + b"\r\x00"
        return cfb([b"\x07" + run], "doc")  # odd offset on purpose
    enc = {"tcvn3": enc_tcvn3, "vni": enc_vni, "cp1258": enc_cp1258}[mode]
    return cfb([b"\r".join(enc(l) for l in lines) + b"\r"], "doc")


def cfb_xls(level):
    strings = []
    for l in doc_lines(level):
        s = unicodedata.normalize("NFC", l)
        strings.append(struct.pack("<HB", len(s), 1) + s.encode("utf-16-le"))
    return cfb([b"\xfc\x00" + b"".join(strings)], "xls")


def html(level, mode):
    lines = doc_lines(level)
    if mode == "entities":
        body = "".join("<p>%s</p>" % "".join(c if ord(c) < 0x80 else "&#%d;" % ord(c) for c in l) for l in lines)
        return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>VB</title></head><body>"
                + body + "</body></html>").encode("ascii")
    if mode == "windows-1258":
        body = b"".join(b"<div>" + enc_cp1258(l) + b"</div>" for l in lines)
        return b"<html><head><meta charset=\"windows-1258\"></head><body>" + body + b"</body></html>"
    body = "".join("<p style=\"text-align:center\"><span>%s</span></p>\n" % esc(l) for l in lines)
    return ("<!DOCTYPE html><html lang=\"vi\"><head><meta charset=\"utf-8\"><style>p{margin:0}</style></head><body>"
            + body + "</body></html>").encode()


def qp(data):
    out, line = [], ""
    for b in data:
        c = chr(b) if 33 <= b <= 126 and b != 61 else ("=%02X" % b if b not in (10,) else "\n")
        if c == "\n":
            out.append(line)
            line = ""
            continue
        if len(line) + len(c) > 72:
            out.append(line + "=")
            line = ""
        line += c
    out.append(line)
    return "\r\n".join(out)


def b64(data):
    import base64
    s = base64.b64encode(data).decode()
    return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def eml(level, mode):
    """mode: `qp` (stamp in a quoted-printable text body), `html-b64` (base64
    HTML alternative), `docx` (stamp only in an attached DOCX), `zip`
    (attached ZIP holding the DOCX)."""
    text = "\n".join(doc_lines(level) if mode == "qp" else BODY).encode()
    parts = []
    parts.append("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                 + qp(text) + "\r\n")
    if mode == "html-b64":
        parts.append("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                     + b64(html(level, "utf-8")) + "\r\n")
    if mode in ("docx", "zip"):
        att = docx(level)
        name, ctype = "bao-cao.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        if mode == "zip":
            att, name, ctype = zip_bytes([("ho-so/bao-cao.docx", att)]), "ho-so.zip", "application/zip"
        parts.append("Content-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n" % (ctype, name, name, b64(att)))
    boundary = "=_canhgac_boundary_1"
    msg = ("From: van.thu@hatinh.gov.vn\r\nTo: so.tttt@hatinh.gov.vn\r\nSubject: =?utf-8?B?QsOhbyBjw6Fv?=\r\n"
           "Date: Mon, 6 May 2024 07:08:10 +0700\r\nMessage-ID: <1@hatinh.gov.vn>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\nThis is a MIME message.\r\n" % boundary)
    for p in parts:
        msg += "--%s\r\n%s" % (boundary, p)
    msg += "--%s--\r\n" % boundary
    return msg.encode()


# ---------------------------------------------------------------- corpus

def documents():
    """(relative path, bytes, level or None, encoding, container)."""
    out = []
    for level in [None, "mat", "toi-mat", "tuyet-mat"]:
        tag = level or "none"
        for enc in ENCODINGS:
            data = encode("\r\n".join(doc_lines(level)) + "\r\n", enc)
            out.append((f"text/{tag}.{enc}.txt", data, level, enc, "text"))
        out.append((f"html/{tag}.utf-8.html", html(level, "utf-8"), level, "utf-8", "html"))
        out.append((f"html/{tag}.entities.html", html(level, "entities"), level, "utf-8", "html"))
        out.append((f"html/{tag}.windows-1258.html", html(level, "windows-1258"), level, "windows-1258", "html"))
        for where in ["body", "split", "header", "textbox", "comment"]:
            out.append((f"docx/{tag}.{where}.docx", docx(level, where), level, "utf-8", "docx"))
        for legacy in ["tcvn3", "vni"]:
            out.append((f"docx/{tag}.{legacy}-font.docx", docx(level, "body", legacy), level, legacy, "docx"))
        if level in (None, "tuyet-mat"):
            out.append((f"docx/{tag}.long.docx", docx_long(level), level, "utf-8", "docx"))
        for where in ["caps", "caps-style"]:
            out.append((f"docx/{tag}.{where}.docx", docx(level, where), level, "utf-8", "docx"))
        stamp = [(LEVELS[level].capitalize(), "span")] if level else []
        out.append((f"office/{tag}.caps.odt", odt_caps([(t, "") for t in HEADER] + stamp + [(t, "") for t in BODY]),
                    level, "utf-8", "odt"))
        if level:
            out.append((f"office/{tag}.caps-style.odt",
                        odt_caps([(t, "") for t in HEADER] + [(LEVELS[level].lower(), "para")] +
                                 [(t, "") for t in BODY]), level, "utf-8", "odt"))
        out.append((f"office/{tag}.xlsx", xlsx(level), level, "utf-8", "xlsx"))
        out.append((f"office/{tag}.pptx", pptx(level), level, "utf-8", "pptx"))
        out.append((f"office/{tag}.odt", odf(level, "odt"), level, "utf-8", "odt"))
        out.append((f"office/{tag}.ods", odf(level, "ods"), level, "utf-8", "ods"))
        out.append((f"rtf/{tag}.unicode.rtf", rtf(level, "unicode"), level, "utf-8", "rtf"))
        out.append((f"rtf/{tag}.cp1258.rtf", rtf(level, "cp1258"), level, "windows-1258", "rtf"))
        out.append((f"rtf/{tag}.tcvn3.rtf", rtf(level, "tcvn3"), level, "tcvn3", "rtf"))
        out.append((f"pdf/{tag}.cid.pdf", pdf(level, "cid"), level, "utf-8", "pdf"))
        out.append((f"pdf/{tag}.tcvn3.pdf", pdf(level, "tcvn3"), level, "tcvn3", "pdf"))
        out.append((f"legacy/{tag}.utf16.doc", cfb_doc(level, "utf16"), level, "utf-16le", "doc"))
        out.append((f"legacy/{tag}.tcvn3.doc", cfb_doc(level, "tcvn3"), level, "tcvn3", "doc"))
        out.append((f"legacy/{tag}.vni.doc", cfb_doc(level, "vni"), level, "vni", "doc"))
        out.append((f"legacy/{tag}.cp1258.doc", cfb_doc(level, "cp1258"), level, "windows-1258", "doc"))
        out.append((f"legacy/{tag}.xls", cfb_xls(level), level, "utf-16le", "xls"))
        for mode in ["qp", "html-b64", "docx", "zip"]:
            cont = {"qp": "email", "html-b64": "email/html", "docx": "email/docx", "zip": "email/zip/docx"}[mode]
            out.append((f"email/{tag}.{mode}.eml", eml(level, mode), level, "utf-8", cont))
        inner = encode("\n".join(doc_lines(level)), "utf-8")
        out.append((f"archive/{tag}.txt.gz", gzip.compress(inner, mtime=0), level, "utf-8", "gzip"))
        out.append((f"archive/{tag}.zip", zip_bytes([("a/b/bao-cao.docx", docx(level)), ("readme.txt", "x")]),
                    level, "utf-8", "zip/docx"))
        nested = zip_bytes([("inner.zip", zip_bytes([("van-ban.txt", encode("\n".join(doc_lines(level)), "vni"))]))])
        out.append((f"archive/{tag}.nested.zip", nested, level, "vni", "zip/zip"))
    for name, lines in HARD_NEGATIVES.items():
        for enc in ["utf-8", "tcvn3", "vni", "windows-1258"]:
            out.append((f"negative/{name}.{enc}.txt", encode("\n".join(lines), enc), None, enc, "text"))
        out.append((f"negative/{name}.docx", docx_lines(lines), None, "utf-8", "docx"))
    # stamps in lowercase or mixed case without capitals formatting, and
    # capitals formatting on words that are not a stamp
    plain = "".join(w_par(t) for t in HEADER)
    body = "".join(w_par(t) for t in BODY)
    lower = plain + w_par("tuyệt mật") + w_par("Tối mật") + w_par("mật") + body
    out.append(("negative/neg-lowercase.docx", docx_xml(lower), None, "utf-8", "docx"))
    caps = plain + w_par_caps("mật khẩu hộp thư công vụ", "direct") + w_par_caps("tối mật", "off") + \
        w_par_caps("mật độ dân số", "style") + body
    out.append(("negative/neg-caps-words.docx", docx_xml(caps, CAPS_STYLES), None, "utf-8", "docx"))
    odt = [(t, "") for t in HEADER] + [("tuyệt mật", "none"), ("Mật ong rừng", "span"), ("mật độ", "para"),
                                       ("Tối mật", "")] + [(t, "") for t in BODY]
    out.append(("negative/neg-caps-words.odt", odt_caps(odt), None, "utf-8", "odt"))
    return out


def docx_xml(pars, styles=None):
    doc = f'<?xml version="1.0" encoding="UTF-8"?><w:document {W}><w:body>{pars}</w:body></w:document>'
    extra = [("word/styles.xml", styles)] if styles else []
    return zip_bytes([("[Content_Types].xml", "<Types/>"), ("word/document.xml", doc)] + extra)


def docx_lines(lines):
    doc = f'<?xml version="1.0" encoding="UTF-8"?><w:document {W}><w:body>{"".join(w_par(t) for t in lines)}' \
          '</w:body></w:document>'
    return zip_bytes([("[Content_Types].xml", "<Types/>"), ("word/document.xml", doc)])


def bad_inputs():
    """Damaged and hostile inputs: (path, bytes). None may alert; all must
    end in bounded time without a panic."""
    out = []
    good = docx("tuyet-mat")
    out.append(("bad/truncated.docx", good[: len(good) // 2]))
    out.append(("bad/garbage.zip", b"PK\x03\x04" + bytes(range(256)) * 8))
    # 64 MiB of zeros deflated: beyond the ratio limit
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = z.compress(bytes(64 << 20)) + z.flush()
    out.append(("bad/bomb.zip", raw_zip("zeros.txt", bomb, 64 << 20)))
    out.append(("bad/bomb.gz", gzip.compress(bytes(64 << 20), mtime=0)))
    deep = encode("\n".join(doc_lines("tuyet-mat")), "utf-8")
    for i in range(12):
        deep = zip_bytes([("l%d.zip" % i if i else "l.txt", deep)])
    out.append(("bad/deep.zip", deep))
    out.append(("bad/truncated.pdf", pdf("tuyet-mat", "cid")[:300]))
    out.append(("bad/bad-flate.pdf", pdf_bytes([b"<< /Length 9 /Filter /FlateDecode >>\nstream\nnot flate\nendstream"])))
    out.append(("bad/broken.eml", b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
                                  b"Content-Transfer-Encoding: base64\r\n\r\n!!!!@@@@"))
    out.append(("bad/encrypted.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) +
                "EncryptedPackage".encode("utf-16-le") + bytes(1000)))
    out.append(("bad/rtf-deep.rtf", b"{\\rtf1" + b"{" * 100000 + b"}" * 100000 + b"}"))
    return out


def raw_zip(name, deflated, size):
    """A one-entry zip around already-deflated bytes (CRC left 0)."""
    n = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(deflated), size, len(n), 0) + n
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, 0, len(deflated), size, len(n),
                          0, 0, 0, 0, 0, 0) + n
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(deflated), 0)
    return local + deflated + central + end


# ---------------------------------------------------------------- captures

def tcp_session(client, server, cport, sport, exchanges):
    """Frames of one TCP session: handshake, then (from_client, bytes)
    segments of at most 1400 bytes, then FIN both ways."""
    frames = []
    cs, ss = 1000, 5000
    f = tcpframes.frame
    frames.append(f(client, client, server, cport, sport, cs, 0, tcpframes.SYN))
    frames.append(f(client, server, client, sport, cport, ss, cs + 1, tcpframes.SYN | tcpframes.ACK))
    cs += 1
    ss += 1
    frames.append(f(client, client, server, cport, sport, cs, ss, tcpframes.ACK))
    for from_client, data in exchanges:
        for i in range(0, len(data), 1400):
            chunk = data[i:i + 1400]
            if from_client:
                frames.append(f(client, client, server, cport, sport, cs, ss, tcpframes.ACK | tcpframes.PSH, chunk))
                cs += len(chunk)
                frames.append(f(client, server, client, sport, cport, ss, cs, tcpframes.ACK))
            else:
                frames.append(f(client, server, client, sport, cport, ss, cs, tcpframes.ACK | tcpframes.PSH, chunk))
                ss += len(chunk)
                frames.append(f(client, client, server, cport, sport, cs, ss, tcpframes.ACK))
    frames.append(f(client, client, server, cport, sport, cs, ss, tcpframes.FIN | tcpframes.ACK))
    frames.append(f(client, server, client, sport, cport, ss, cs + 1, tcpframes.FIN | tcpframes.ACK))
    frames.append(f(client, client, server, cport, sport, cs + 1, ss + 1, tcpframes.ACK))
    return frames


def ip(s):
    return bytes(int(x) for x in s.split("."))


def smb2(command, message_id, body, response=False, status=0):
    """One SMB2 message (64-byte header, no signing) in a NetBIOS frame."""
    hdr = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 1, status, command, 1, 1 if response else 0, 0,
                      message_id, 0, 1, 0x1000, bytes(16))
    msg = hdr + body
    return struct.pack(">I", len(msg)) + msg


FILE_ID = bytes(range(16))


def smb2_session(client, server, written, read):
    """A client writing `written` (two WRITE requests, second one first)
    and reading `read` back (one READ) over SMB2 on port 445."""
    ex = []
    mid = 10
    if written:
        half = len(written) // 2
        for off, chunk in [(half, written[half:]), (0, written[:half])]:
            body = struct.pack("<HHIQ16sIIHHI", 49, 64 + 48, len(chunk), off, FILE_ID, 0, 0, 0, 0, 0) + chunk
            ex.append((True, smb2(9, mid, body)))
            ex.append((False, smb2(9, mid, struct.pack("<HHIIHH", 17, 0, len(chunk), 0, 0, 0), response=True)))
            mid += 1
    if read:
        other = bytes(15) + b"\x01"
        body = struct.pack("<HBBIQ16sIIIHHB", 49, 0, 0, len(read), 0, other, 1, 0, 0, 0, 0, 0)
        ex.append((True, smb2(8, mid, body)))
        resp = struct.pack("<HBBIII", 17, 64 + 16, 0, len(read), 0, 0) + read
        ex.append((False, smb2(8, mid, resp, response=True)))
    return tcp_session(client, server, 40010, 445, ex)


def captures():
    """(path, frames, expected level or None, channel)."""
    c, s = ip("10.20.0.5"), ip("203.0.113.10")
    out = []
    d = docx("tuyet-mat")
    up = (b"POST /upload HTTP/1.1\r\nHost: files.example.net\r\nContent-Type: multipart/form-data; boundary=BB\r\n"
          b"Content-Length: %d\r\n\r\n")
    form = (b"--BB\r\nContent-Disposition: form-data; name=\"f\"; filename=\"bao-cao.docx\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + d + b"\r\n--BB--\r\n")
    out.append(("capture/http-upload-docx.pcap", tcp_session(c, s, 40001, 80, [
        (True, (up % len(form)) + form), (False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")]),
        "tuyet-mat", "http"))
    body = gzip.compress(html("toi-mat", "utf-8"), mtime=0)
    out.append(("capture/http-download-gzip-html.pcap", tcp_session(c, s, 40002, 80, [
        (True, b"GET /vb.html HTTP/1.1\r\nHost: portal.example.net\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
         % len(body) + body)]), "toi-mat", "http"))
    neg = docx_lines(HARD_NEGATIVES["neg-mat-khau"])
    out.append(("capture/http-negative.pcap", tcp_session(c, s, 40003, 80, [
        (True, b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(neg) + neg),
        (False, b"HTTP/1.1 204 No Content\r\n\r\n")]), None, "http"))
    mail = eml("mat", "docx").replace(b"\r\n.", b"\r\n..")
    out.append(("capture/smtp-docx.pcap", tcp_session(c, s, 40004, 25, [
        (False, b"220 mx ESMTP\r\n"), (True, b"EHLO a\r\n"), (False, b"250 mx\r\n"),
        (True, b"MAIL FROM:<a@b>\r\n"), (False, b"250 ok\r\n"), (True, b"RCPT TO:<c@d>\r\n"), (False, b"250 ok\r\n"),
        (True, b"DATA\r\n"), (False, b"354 go\r\n"), (True, mail + b"\r\n.\r\n"), (False, b"250 queued\r\n"),
        (True, b"QUIT\r\n"), (False, b"221 bye\r\n")]), "mat", "smtp"))
    pdfdata = pdf("tuyet-mat", "tcvn3")
    ctrl = tcp_session(c, s, 40005, 21, [
        (False, b"220 ftp\r\n"), (True, b"USER a\r\n"), (False, b"331 pw\r\n"), (True, b"PASS b\r\n"),
        (False, b"230 ok\r\n"), (True, b"PASV\r\n"), (False, b"227 Entering Passive Mode (203,0,113,10,195,80)\r\n"),
        (True, b"STOR bao-cao.pdf\r\n"), (False, b"150 ok\r\n"), (False, b"226 done\r\n"), (True, b"QUIT\r\n")])
    data = tcp_session(c, s, 40006, 195 * 256 + 80, [(True, pdfdata)])
    out.append(("capture/ftp-pasv-pdf.pcap", ctrl[:12] + data + ctrl[12:], "tuyet-mat", "ftp-data"))
    out.append(("capture/smb2-write-read.pcap", smb2_session(c, s, docx("toi-mat"), pdf("mat", "tcvn3")),
                "toi-mat", "smb"))
    out.append(("capture/smb2-read-pdf.pcap", smb2_session(c, s, None, pdf("mat", "tcvn3")), "mat", "smb"))
    txt = encode("\r\n".join(doc_lines("toi-mat")), "tcvn3")
    out.append(("capture/tcp-raw-tcvn3.pcap", tcp_session(c, s, 40007, 9100, [(True, txt)]), "toi-mat", "tcp"))
    return out


def main():
    docs = documents()
    bad = bad_inputs()
    caps = captures()
    for rel, data, *_ in docs:
        write(rel, data)
    for rel, data in bad:
        write(rel, data)
    for rel, frames, *_ in caps:
        path = os.path.join(OUT, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tcpframes.write_pcap(path, frames)
    with open(os.path.join(ROOT, "expected.tsv"), "w") as f:
        f.write("# path\tlevel\tencoding\tcontainer (generated by _gen/gen.py)\n")
        for rel, _, level, enc, cont in docs:
            f.write(f"{rel}\t{level or '-'}\t{enc}\t{cont}\n")
        for rel, _ in bad:
            f.write(f"{rel}\t-\t-\tbad\n")
        for rel, _, level, channel in caps:
            f.write(f"{rel}\t{level or '-'}\t-\t{channel}\n")
    with open(os.path.join(ROOT, "phrases.txt"), "w") as f:
        f.write("\n".join(PHRASES + [l for l in BODY if len(l) > 20]) + "\n")
    if "--bench" in sys.argv:
        bench(int(sys.argv[sys.argv.index("--bench") + 1]))


def write(rel, data):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


WORDS = ("ủy ban nhân dân tỉnh huyện xã sở ban ngành báo cáo kế hoạch thực hiện chỉ đạo công tác bảo đảm an toàn "
         "thông tin mạng hệ thống giám sát ứng cứu sự cố đơn vị cán bộ công chức năm tháng quý kết quả nhiệm vụ "
         "triển khai văn bản quy định nghị định thông tư quyết định phê duyệt cấp độ dữ liệu người dùng máy chủ "
         "phần mềm đào tạo kiểm tra đánh giá định kỳ đề xuất kiến nghị tổng hợp").split()
# words with the syllable "mật", about 3 in 1000 words as in real reports
MAT_WORDS = ["mật khẩu", "bảo mật", "bí mật"]


def prose(n_paragraphs, seed):
    """Deterministic varied Vietnamese prose (no stamp; "bảo mật", "mật
    khẩu", "bí mật" appear as they do in real reports)."""
    x = seed
    out = list(HEADER)
    for i in range(n_paragraphs):
        words = []
        for _ in range(40 + i % 30):
            x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            r = (x >> 33) % 1000
            words.append(MAT_WORDS[r % 3] if r < 3 else WORDS[(x >> 20) % len(WORDS)])
        out.append("%d. %s." % (i + 1, " ".join(words).capitalize()))
    return out + BODY[5:]


def bench(mib):
    """Unmarked documents for the throughput benchmark, about `mib` MiB in
    all: reports as UTF-8 and TCVN3 text, HTML, DOCX, PDF and e-mail."""
    d = os.path.join(ROOT, "..", "..", "target", "secrets-bench")
    os.makedirs(d, exist_ok=True)
    total, i = 0, 0
    while total < mib << 20:
        lines = prose(400, i + 1)
        text = "\n".join(lines) + "\n"
        page = "<!DOCTYPE html><html><body>" + "".join("<p>%s</p>" % esc(l) for l in lines) + "</body></html>"
        for name, data in [("utf8.txt", encode(text, "utf-8")), ("tcvn3.txt", encode(text, "tcvn3")),
                           ("page.html", page.encode()), ("report.docx", docx_lines(lines)),
                           ("mail.eml", eml_text(text))]:
            with open(os.path.join(d, "%04d-%s" % (i, name)), "wb") as f:
                f.write(data)
            total += len(data)
        i += 1


def eml_text(text):
    return ("From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + b64(text.encode()) + "\r\n").encode()


if __name__ == "__main__":
    main()
