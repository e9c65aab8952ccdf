"""The leaderboard website and the render's safety rules: records built in code, no torch, no training."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .helpers import make_record
from robbench.cli import main
from robbench.config import Metadata
from robbench.leaderboard import check_leaderboards, render_all, write_leaderboards
from robbench.results import Checkpoint
from robbench.store import write_record

BOARD = "site/fashion-mnist-linf-0p1.html"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    hub = Checkpoint(path="hf://models/org/delta@" + "a" * 40 + "/model.safetensors", sha256="d" * 64,
                     repo="org/delta", revision="a" * 40)
    for record in (
        make_record("alpha", clean=0.80, robust=0.40, paper="https://example.org/alpha"),
        make_record("beta", clean=0.85, robust=0.40, sha256="b" * 64),
        make_record("gamma", clean=0.95, robust=0.05, training="standard", sha256="c" * 64),
        make_record("partial", clean=0.82, robust=0.45, stop=1_000, sha256="e" * 64),
        make_record("delta", clean=0.70, robust=0.35, sha256="d" * 64).model_copy(update={
            "config": make_record("delta", clean=0.70, robust=0.35).config.model_copy(update={"checkpoint": hub}),
            "metadata": Metadata(training="trades", venue="ICML 2019"),
        }),
    ):
        write_record(record, folder)
    return folder


class Rows(HTMLParser):
    """The board table's rows: each a dict of the cells' data-sort values, by column header."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.links: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag == "th":
            self._in_th = True
        elif tag == "tr" and "data-name" in attrs:
            self.rows.append({"__training": attrs["data-training"], "__subset": attrs["data-subset"]})
        elif tag == "td" and self.rows and "data-sort" in attrs:
            self.rows[-1][self.headers[len(self.rows[-1]) - 2]] = attrs["data-sort"]

    def handle_endtag(self, tag):
        self._in_th = self._in_th and tag != "th"

    def handle_data(self, data):
        if self._in_th and not self.rows:
            self.headers.append(data)


def parse(html: bytes) -> Rows:
    parser = Rows()
    parser.feed(html.decode("utf-8"))
    return parser


def test_site_board_numbers_are_the_records(results: Path) -> None:
    files, problems = render_all(results)
    assert problems == []
    assert {"site/index.html", BOARD, "site/fashion-mnist-linf-0p1.png", "site/models/alpha.html"} <= set(files)
    assert files["site/fashion-mnist-linf-0p1.png"] == files["fashion-mnist-linf-0p1.png"]
    assert "[site/index.html](site/index.html)" in files["README.md"].decode()  # the markdown index points to it
    rows = parse(files[BOARD]).rows
    assert [r["model"] for r in rows] == ["partial", "beta", "alpha", "delta", "gamma"]
    by_name = {r["model"]: r for r in rows}
    assert float(by_name["partial"]["clean % (95% CI)"]) == 0.82 and float(by_name["partial"]["robust % (95% CI)"]) == 0.45
    assert by_name["partial"]["__subset"] == "subset" and by_name["alpha"]["__subset"] == "full"
    assert by_name["delta"]["__training"] == "trades" and by_name["delta"]["venue"] == "ICML 2019"
    text = files[BOARD].decode("utf-8")
    assert "1,000 of 10,000 †" in text and ">=2<" in text  # alpha ties beta (rank 2): the same examples survive


def test_markers_and_intervals_match_the_markdown_board(results: Path) -> None:
    files, _ = render_all(results)
    markdown, html = files["fashion-mnist-linf-0p1.md"].decode(), files[BOARD].decode()
    main_table = markdown.split("<details>")[0]  # the main columns; the details table repeats rank and model
    rows = [line for line in main_table.splitlines() if re.match(r"\| =?\d+ \|", line)]
    interval = r"\d+\.\d\d \(\d+\.\d–\d+\.\d\)"  # 72.50 (69.6–75.2)
    for row in rows:
        (name,) = re.findall(r"\(models/([^)]+)\.md\)", row)
        clean, robust = re.findall(rf"(?<=\| )({interval})(?= \|)", row)  # the bars stay for the next cell
        (html_row,) = [r for r in html.split("<tr")[1:] if f'data-name="{name}"' in r]
        assert [cell for cell in re.findall(r">([^<]*)</td>", html_row) if re.fullmatch(interval, cell)] == [clean, robust]
    assert len(rows) == 5
    assert markdown.count("†") >= 1 and html.count("1,000 of 10,000 †") == markdown.count("1,000 of 10,000 †")
    assert re.findall(r"^\| (=?\d+) \|", main_table, flags=re.M) == re.findall(r'data-sort="\d+">(=?\d+)</td>', html)


def test_venue_and_hub_commit_on_both_renderings(results: Path) -> None:
    files, _ = render_all(results)
    url = "https://huggingface.co/org/delta/tree/" + "a" * 40
    details = files["fashion-mnist-linf-0p1.md"].decode().split("<details>")[1]  # venue and hub: behind the toggle
    (row,) = [line for line in details.splitlines() if "delta" in line and line.startswith("|")]
    assert "| ICML 2019 |" in row and f"[org/delta@aaaaaaa]({url})" in row
    assert f'<a href="{url}">org/delta@aaaaaaa</a>' in files[BOARD].decode()
    assert f'<a href="{url}">org/delta@aaaaaaa</a>' in files["site/models/delta.html"].decode()


def test_site_escapes_submitter_metadata(tmp_path: Path) -> None:
    hostile = make_record("m").model_copy(update={"metadata": Metadata(
        training='"><script>alert(1)</script>', paper="javascript:alert(1)", venue="<img src=x onerror=alert(1)>",
        authors="<b>me</b>")})
    write_record(hostile, tmp_path / "results")
    files, _ = render_all(tmp_path / "results")
    for name in (BOARD, "site/models/m.html"):
        page = files[name].decode()
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>me" not in page
        assert "javascript:" not in "".join(parse(files[name]).links)
    assert "&lt;img src=x onerror=alert(1)&gt;" in files[BOARD].decode()


def test_check_covers_the_site(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(results, out)
    assert check_leaderboards(results, out) == ([], [])
    (out / "site/models/alpha.html").write_bytes((out / "site/models/alpha.html").read_bytes() + b" ")
    (out / BOARD).unlink()
    shutil.copy(out / "site/index.html", out / "site/models/gone.html")
    assert check_leaderboards(results, out)[0] == [BOARD, "site/models/alpha.html", "site/models/gone.html"]
    write_leaderboards(results, out)
    assert check_leaderboards(results, out) == ([], []) and not (out / "site/models/gone.html").exists()


def test_site_is_byte_identical_across_renders(results: Path) -> None:
    first, _ = render_all(results)
    again, _ = render_all(results)
    assert {k: v for k, v in first.items() if k.startswith("site/")} == {k: v for k, v in again.items() if k.startswith("site/")}


# ---------------------------------------------------------------------------------------------
# the render's safety rules


@pytest.mark.parametrize("mistake", ["missing", "file"])
def test_mistyped_results_dir_is_refused_and_deletes_nothing(results: Path, tmp_path: Path, capsys, mistake: str) -> None:
    out = tmp_path / "boards"
    write_leaderboards(results, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    wrong = tmp_path / "resluts"
    if mistake == "file":
        wrong.write_text("not a folder")
    for extra in ([], ["--check"]):
        assert main(["leaderboard", "--results-dir", str(wrong), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("robbench: error: results folder") and "\n" not in err and "resluts" in err
        assert ("is a file" if mistake == "file" else "does not exist") in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_hand_written_file_is_never_overwritten(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "boards"
    out.mkdir()
    (out / "README.md").write_text("# my notes\n")
    assert main(["leaderboard", "--results-dir", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "README.md" in err and "was not written by `robbench leaderboard`" in err
    assert (out / "README.md").read_text() == "# my notes\n"
    assert sorted(p.name for p in out.rglob("*")) == ["README.md"]  # refused before anything was written


def test_temporaries_of_a_killed_render_are_removed(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "boards"
    write_leaderboards(results, out)
    left = [out / ".README.md.k3j_x9a1.tmp", out / "site/.index.html.abc123.tmp", out / "models/.alpha.md.q.tmp"]
    for path in left:
        path.write_text("half")
    kept = out / ".notes.txt.tmp"  # not what a render leaves
    kept.write_text("mine")
    write_leaderboards(results, out)
    assert not any(path.exists() for path in left) and kept.read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# in a real browser


@pytest.fixture
def chromium(monkeypatch):
    """A headless Chromium (Debian's, driven by selenium), 1,400 px wide."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must never fetch a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def set_width(driver, width: int) -> None:
    """Resize so that the page's viewport (not the window) is ``width`` px wide."""
    driver.set_window_size(width, 1000)
    inner = driver.execute_script("return window.innerWidth")
    driver.set_window_size(2 * width - inner, 1000)
    assert driver.execute_script("return window.innerWidth") == width


@pytest.mark.slow
def test_board_sorts_filters_and_shows_the_records_in_chromium(results: Path, tmp_path: Path, chromium) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    driver = chromium
    out = tmp_path / "boards"
    write_leaderboards(results, out)
    driver.get((out / BOARD).as_uri())

    def column(header: str) -> list[str]:
        index = [th.get_attribute("textContent") for th in driver.find_elements(By.CSS_SELECTOR, "#board th")].index(header)
        return [row.find_elements(By.TAG_NAME, "td")[index].text
                for row in driver.find_elements(By.CSS_SELECTOR, "#board tbody tr") if row.is_displayed()]

    names = lambda: [n.split(" ")[0].lstrip("⚠ ") for n in column("model")]  # noqa: E731
    assert names() == ["partial", "beta", "alpha", "delta", "gamma"]
    assert column("clean % (95% CI)")[0].startswith("82.00 (") and column("robust % (95% CI)")[-1].startswith("5.00 (")
    assert column("below the row above?") == ["—", "—", "no", "yes", "yes"]
    header = [th for th in driver.find_elements(By.CSS_SELECTOR, "#board th") if th.text == "clean % (95% CI)"][0]
    header.click()
    assert names() == ["delta", "alpha", "partial", "beta", "gamma"]  # 70, 80, 82, 85, 95
    assert [float(c.split()[0]) for c in column("clean % (95% CI)")] == [70.0, 80.0, 82.0, 85.0, 95.0]
    header.click()
    assert names() == ["gamma", "beta", "partial", "alpha", "delta"]
    Select(driver.find_element(By.ID, "filter-training")).select_by_value("standard")
    assert names() == ["gamma"]
    Select(driver.find_element(By.ID, "filter-training")).select_by_value("")
    Select(driver.find_element(By.ID, "filter-subset")).select_by_value("subset")
    assert names() == ["partial"]
    assert driver.find_element(By.CSS_SELECTOR, ".plot img").get_property("naturalWidth") == 900  # the plot loaded
    # the details sit behind a toggle: hidden at first, shown by it
    assert column("venue") == [""] and not driver.find_element(By.XPATH, "//th[text()='venue']").is_displayed()
    driver.find_element(By.CSS_SELECTOR, "label[for=show-details]").click()
    assert driver.find_element(By.XPATH, "//th[text()='venue']").is_displayed() and column("examples") == ["1,000 of 10,000 †"]


def overflow(driver) -> dict[str, int]:
    """How far the page and each of its main blocks reach past the viewport's right edge, in px (0: they fit)."""
    return driver.execute_script("""
        var width = document.documentElement.clientWidth, found = {page: document.documentElement.scrollWidth - width};
        document.querySelectorAll("main > *, #board th:not(.detail), .plot").forEach(function (e, i) {
          var right = e.getBoundingClientRect().right;
          if (right > width) { found[e.tagName + (e.id ? "#" + e.id : "") + ":" + i] = Math.ceil(right - width); }
        });
        return found;""")


@pytest.mark.slow
def test_site_fits_the_screen_and_its_plots_link_the_models(results: Path, tmp_path: Path, chromium) -> None:
    """Screenshots of the index, a board and a model page at 1,400 and 420 px; at 1,400 px nothing scrolls sideways."""
    from selenium.webdriver.common.by import By

    driver = chromium
    out = tmp_path / "boards"
    write_leaderboards(results, out)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for width in (1400, 420):
        set_width(driver, width)
        for page in ("index.html", "fashion-mnist-linf-0p1.html", "models/delta.html"):
            driver.get((out / "site" / page).as_uri())
            if width == 1400:
                assert overflow(driver) == {"page": 0}, page
            shot = shots / f"{page.replace('/', '-')}-{width}.png"
            assert driver.get_screenshot_as_file(str(shot)) and shot.stat().st_size > 10_000
    set_width(driver, 1400)
    driver.get((out / "site/index.html").as_uri())
    # the landing page: the board's plot and its top rows, each linked
    assert driver.find_element(By.CSS_SELECTOR, ".card .plot img").get_property("naturalWidth") == 900
    assert [a.text for a in driver.find_elements(By.CSS_SELECTOR, ".card td.model a")] == ["partial", "beta", "alpha"]
    assert driver.find_elements(By.CSS_SELECTOR, "nav a") == []  # the index does not link to itself
    # a point on the plot is a link to its model page, where it was drawn
    spot = driver.find_element(By.CSS_SELECTOR, '.card .plot a.spot[href="models/gamma.html"]')
    assert spot.size["width"] > 20 and spot.size["height"] > 10
    spot.click()
    assert driver.current_url.endswith("/site/models/gamma.html")
    assert driver.find_element(By.TAG_NAME, "h1").text == "gamma"
    links = {a.text: a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#entries a, #runs a")}
    assert links["fashion-mnist — Linf ε = 0.1"].endswith("/site/fashion-mnist-linf-0p1.html")  # boards by title
    (record,) = [href for text, href in links.items() if text.startswith("pgd")]
    assert record.startswith("file://") and Path(record[len("file://"):]).is_file()  # the record, to download
