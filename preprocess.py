"""From a photo or scan to what MNIST's digits look like: a desk around the sheet is found and left out, the paper's
light and shadows are taken out, ink is found by its contrast in its strongest colour channel, ruled lines and
specks are dropped, and each digit, left to right, becomes a 28x28 image of light ink on black with its centre of
mass at the centre (a piece wide enough to be two touching digits also comes cut in two, for the reader to choose)."""
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

WORK_SIZE = 1024  # long side of the copy digits are found on: even a small digit there is far more than 20x20
THUMB_SIZE = 128  # long side of the copy the paper's brightness is estimated on
MIN_DIGIT_HEIGHT = 0.04  # of the image's short side: smaller marks are specks, not digits
MAX_STROKE = 0.7  # of a digit's height or width: the widest a pen stroke (or a crossing of two) may be
FILLED = 3.0  # ink area over the square of its widest stroke under which a piece touching the picture's or the
# desk's edge is a wedge of shade, not a pen's strokes: the wedges read as digits on seeds 0-5 had 1.4-2.4, most
# digits looked at 3.9-6.8; a bold digit can have less (an 8 whose small loops closed: 2.3) (NOTES.md)
MIN_CONTRAST = 0.11  # mean ink contrast of a digit, of the paper's brightness: fainter is a blank page's noise
INK_FLOOR = 0.04  # of the paper's brightness: the faintest a pixel of a stroke may be
DESK_CONTRAST = 0.1  # of the paper's brightness: darker than paper, along the border, is a desk
MAX_DESK = 0.6  # of the picture: a photo of a sheet shows more sheet than desk
DESK_EDGE = 0.025  # of the paper's brightness per pixel of the small copy's median: a desk's edge (the sheet's) is
# this steep along a tenth of it (0.37 at the median on seeds 0-1's desk pages); light falling off is gentler (0.019)
LIGHT_GROUND = 0.5  # median brightness above which the ground is paper and the ink dark
MARGIN = 0.12  # of the picture's width or height: the outer band where a sheet's edge may lie
EDGE_RUN = 0.1  # of the picture's short side: a piece running along its edge (or the desk's) this far is no digit
SLIVER = 0.08  # of the picture's short side: a short piece wholly this close to its edge is a page's edge (NOTES.md)
SPLIT_ASPECT = 0.7  # width over height from which a piece may be two touching digits (a 1 beside a 7 is narrow);
# 7 MNIST test digits in 10 are this wide too: the reader's confidence decides (predict.read_number)
FLAT = 3.4  # width over height from which a piece is a line's stretch, not one digit nor two touching: MNIST's
# digits are at most 2.5, touching pairs on the generated pages at most 2.67, lines' stretches on blank pages 4.35 and
# 4.93 (NOTES.md)
PAIR_ASPECT = 0.55  # width over height from which the pair model is shown a piece: a 1 touching a 1 or a 7 is narrow
PAIR_WIDTH = 56  # columns of the picture of a piece that may be two digits: two MNIST digits side by side
TIGHT_CROP = 64  # pixels on the short side up to which an image is a crop around its digits (MNIST's 28x28), no page
SHADOW_SHARE = 0.14  # of a digit's contrast that stays against paper following shadows: midway (geometric) between
# the digits on the generated pages of NOTES.md (seeds 0-5: 0.176 and more) and the shadow wedges read there (0.113)
FAINT_INK = 0.25  # of the ink mask's Otsu threshold: a fainter mask, looked at only beside the digits kept, for a
# digit in a thin, faint pen among bold ones (an outline font's two hairlines), under that threshold or dropped as
# far fainter than the bold ones
FAINT_CONTRAST = 0.07  # mean contrast of such a digit: the outline digits found on the pages of seeds 0-3 0.08-0.11,
# the shadow and the squared lines beside a single digit that a looser rule took for one 0.05 and 0.06 (NOTES.md)
STRAIGHT_CUT_ASPECT = 1.1  # from this width over height, straight cuts are offered too: where round digits overlap,
# every path crossing at most two strokes runs through a loop (NOTES.md)


class ImageError(Exception):
    """An image that cannot be read or holds no digit; the message says why."""


def read_rgb(source, work_size=WORK_SIZE):
    """Any image PIL reads (a path, or the file's bytes) as float32 RGB (H, W, 3) in [0, 1], its long side at most
    WORK_SIZE; EXIF rotation applied, transparency flattened onto white paper, 16-bit and float greys scaled (not
    clipped). An image of more pixels than PIL's decompression-bomb limit is refused, not decoded."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif not Path(source).is_file():
        raise ImageError("no such file")
    try:
        with warnings.catch_warnings(), Image.open(source) as img:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.draft("RGB", (work_size, work_size))  # JPEG: decode at 1/2, 1/4 or 1/8 size, much faster
            img = ImageOps.exif_transpose(img)  # phone photos carry their rotation in EXIF
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                pixels = np.asarray(img, dtype=np.float32)
                img = Image.fromarray(np.uint8(255 * np.clip(pixels, 0, None) / max(pixels.max(), 1)))
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
            img = img.convert("RGB")
            img.thumbnail((work_size, work_size), Image.Resampling.BOX)  # only ever shrinks
            rgb = np.asarray(img, dtype=np.float32) / 255  # decodes now, inside the try: truncated files fail here
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        reason = reason.replace(f" {source!r}", "").replace(f" {str(source)!r}", "")  # the row names the file
        raise ImageError(f"not a readable image ({reason})") from e
    return rgb


def odd(n):
    return max(3, int(n) | 1)


def median(image, size):
    """IMAGE (floats in [0, 1]) median-filtered over SIZE pixels: OpenCV takes windows over 5 on 8-bit images only."""
    return np.float32(cv2.medianBlur(np.uint8(np.round(255 * image)), size)) / 255


def light_ink(rgb, desk):
    """Is the ink lighter than the paper? Ink is what departs from the local median (over an eighth of a small
    copy: a wider band of light or shade is ground), a minority: its strong departures are mostly darker or mostly
    lighter. (A global median is fooled by a shadow over half the page; and the DESK, a mask of a small copy, is
    painted over with the sheet nearest it first: else the sheet beside a dark desk would be lighter than its
    surroundings, like chalk; and what lies within the median's reach of the desk has no vote: a sunlit corner of a
    shaded sheet is lighter than the desk painted beside it, mostly with the shade.) A ground darker than 0.3 is
    never paper, and one lighter than LIGHT_GROUND always is: the vote is for the grounds between."""
    small = small_copy(rgb.mean(axis=2), 256)
    desk = cv2.resize(np.uint8(desk), small.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    ground = np.median(small[~desk])
    if ground < 0.3:  # a dark ground (a blackboard, MNIST itself): no shadow makes paper that dark
        return True
    if ground > LIGHT_GROUND:  # paper; the vote below would take a sheet amid a desk it missed for chalk
        return False
    small, window = paint_over(small, desk), odd(min(small.shape) / 8)
    voters = cv2.dilate(np.uint8(desk), np.ones((window, window), np.uint8)) == 0
    departure = (small - median(small, window))[voters]
    spread = 1.4826 * np.median(np.abs(departure)) + 2 / 255  # noise, and a floor for clean images
    lighter, darker = departure[departure > 4 * spread].sum(), -departure[departure < -4 * spread].sum()
    return lighter > 2 * darker  # clearly: dark ink on light paper is the usual case, and a blank page's guess


def paint_over(image, desk):
    """IMAGE (grey or colour) with the DESK painted over by the sheet nearest it, so that the sheet seems to go on
    beyond its edge: beside a sunlit corner of the sheet the desk is painted bright, beside a shadowed one dark."""
    if not desk.any():
        return image
    sheet, blur = np.float32(~desk), min(desk.shape) / 8
    per_pixel = (slice(None), slice(None)) + (None,) * (image.ndim - 2)  # a mask for each channel of a colour image
    nearby = cv2.GaussianBlur(image * sheet[per_pixel], (0, 0), blur) / \
        np.maximum(cv2.GaussianBlur(sheet, (0, 0), blur), 1e-6)[per_pixel]
    return np.where(desk[per_pixel], nearby, image)


def closing(thumb, size=0.25):
    """The paper's brightness on a small copy: a morphological closing, which removes strokes narrower than SIZE
    of the copy but keeps the edges of shadows and the slope of uneven light."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(size * min(thumb.shape[:2])),) * 2)
    return cv2.morphologyEx(np.float32(thumb), cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)


def closing_by_reconstruction(thumb, size=0.25):
    """Like closing(), but a dark region that the dilation does not remove (a shadow) comes back whole, corners and
    all (a plain closing fills a shadow's acute corner with the light paper beside it): the dilation, then erosion
    repeated until nothing changes, never below the picture. A stroke joined to a shadow takes its darkness too, so
    this estimate only vets the digits found with the plain one (without_shadow_corners)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(size * min(thumb.shape[:2])),) * 2)
    thumb = np.float32(thumb)
    paper = cv2.dilate(thumb, kernel, borderType=cv2.BORDER_REPLICATE)
    while True:
        lower = np.maximum(cv2.erode(paper, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE), thumb)
        if np.array_equal(lower, paper):
            return paper
        paper = lower


def darker_than(rgb, paper):
    """Per pixel, how much darker RGB is than PAPER in its most contrasting channel (the last axis): 0 as bright,
    1 black."""
    return np.clip(1 - (rgb / np.maximum(paper, 1e-3)).min(axis=-1), 0, 1)


def small_copy(rgb, size=THUMB_SIZE):
    """RGB (or a grey image) with its long side SIZE, or less (never enlarged), its short side at least a pixel:
    where the paper's brightness is estimated."""
    h, w = rgb.shape[:2]
    scale = min(1.0, size / max(h, w))
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def as_dark_ink(rgb):
    """(RGB as dark ink on light paper, a small copy of it with the desk painted over by the sheet, the desk on that
    copy). What lies beyond the sheet (a desk along the picture's border) is not paper: painted over with the sheet
    nearest it, it does not darken the paper's estimate. Light ink on a dark ground is inverted."""
    thumb = small_copy(rgb)
    desk = beyond_the_sheet(thumb)
    if light_ink(rgb, desk):
        rgb, thumb, desk = 1 - rgb, 1 - thumb, np.zeros_like(desk)
    return rgb, paint_over(thumb, desk), desk


def full_size_paper(rgb, thumb, estimate=closing):
    """The paper's brightness per pixel of RGB: ESTIMATE of its small copy THUMB, scaled up."""
    return cv2.resize(estimate(thumb), rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)


def sheet_contrast(rgb, thumb, desk):
    """Per pixel of RGB (dark ink, from as_dark_ink), how much darker than the paper it is, in its most contrasting
    channel: 0 paper, 1 black, and nothing on the DESK; and the desk at RGB's size, a boolean mask. The paper's
    brightness is a closing of the small copy THUMB, taken per channel so that blue ink on white paper keeps its
    contrast in the red channel."""
    contrast = darker_than(rgb, full_size_paper(rgb, thumb))
    desk = cv2.resize(np.uint8(desk), rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    contrast[desk] = 0
    return contrast, desk


def darker_than_paper_beside(thumb):
    """(Where a small copy THUMB is darker than a closing twice as wide as the paper's, smoothed so that wood grain
    or a mottled mat is one region; that closing)."""
    paper = closing(thumb, 0.5)  # wider than a desk's strip
    return cv2.GaussianBlur(darker_than(thumb, paper), (0, 0), 1.5) > DESK_CONTRAST, paper


def beyond_the_sheet(thumb):
    """Where a small copy THUMB (dark ink on paper) shows what is not the sheet: a desk or a table along the
    picture's border. It is found as a region darker than a closing twice as wide as the paper's (wider than a
    desk's strip, whose far part the paper's closing takes for paper) that runs along the border and stays in the
    outer band (a shadow reaches into the middle), smoothed first so that wood grain or a mottled mat is one region;
    then all it cuts off from the sheet (the largest region left) is desk too, and it is grown by two pixels to
    take in the sheet's blurred edge. A digit touches the border, if at all, with a stroke's end. A region that is
    mostly thin dark lines (a squared page's), or whose edge is a gentle slope (light falling off), is no desk."""
    mask, _ = darker_than_paper_beside(thumb)
    count, labels = cv2.connectedComponents(np.uint8(mask), connectivity=8)
    h, w = mask.shape
    inner = slice(round(2 * MARGIN * h), round((1 - 2 * MARGIN) * h)), slice(round(2 * MARGIN * w),
                                                                        round((1 - 2 * MARGIN) * w))
    candidates = along_border(mask, labels, count) - set(np.unique(labels[inner])) - {0}
    plain = cv2.morphologyEx(thumb, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    solid, paper = darker_than_paper_beside(plain)  # without thin lines (a squared page's) and strokes
    # the slope of its median: a median keeps a sheet's straight edge but drops the blob a bold digit leaves in the
    # closing, steep all round (in light falling off toward the border, "7182" passed for a sheet's edge: no digit)
    slope = relative_slope(median(plain, 9), paper)
    desk = np.zeros(mask.shape, bool)
    for label in candidates:
        region = labels == label
        if solid[region].mean() >= 0.5 and has_sharp_edge(region, slope):  # mostly dark without its lines
            desk |= region
    if desk.any():
        count, labels, stats, _ = cv2.connectedComponentsWithStats(np.uint8(~desk), connectivity=4)
        desk = labels != 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA]) if count > 1 else desk
    if desk.mean() >= MAX_DESK:  # the sheet is most of the picture: this is a dark page, or a dark photo
        desk[:] = False
    return cv2.dilate(np.uint8(desk), np.ones((5, 5), np.uint8)) > 0


def relative_slope(thumb, paper):
    """Per pixel of a small copy THUMB, how steeply its brightness changes, per pixel, over PAPER's brightness, in
    its steepest channel; the most within two pixels, so that both sides of an edge see it."""
    slope = np.hypot(cv2.Sobel(thumb, cv2.CV_32F, 1, 0), cv2.Sobel(thumb, cv2.CV_32F, 0, 1)) / 8  # per pixel
    return cv2.dilate((slope / np.maximum(paper, 1e-3)).max(axis=-1), np.ones((5, 5), np.uint8))


def has_sharp_edge(region, slope):
    """Is the edge of REGION, where it lies inside the picture, steep (SLOPE, from relative_slope) somewhere along a
    tenth of it, as a sheet's edge is? Light that falls off toward the border is darker there too, but gently."""
    edge = region & ~(cv2.erode(np.uint8(region), np.ones((3, 3), np.uint8)) > 0)
    edge[:2], edge[-2:], edge[:, :2], edge[:, -2:] = False, False, False, False  # the picture's border is no edge
    return not edge.any() or np.percentile(slope[edge], 90) >= DESK_EDGE


def ink_mask(contrast, share=1.0):
    """Pixels that are ink: above Otsu's threshold on the (lightly smoothed) contrast, or above half of it and
    connected to such pixels; never within the paper's noise, nor on a ruled line. SHARE scales Otsu's threshold."""
    smooth = cv2.GaussianBlur(contrast, (0, 0), max(0.7, min(contrast.shape) / 500))
    paper = np.median(smooth)
    noise = 1.4826 * np.median(np.abs(smooth - paper))  # robust sigma: the paper is most of it
    otsu, _ = cv2.threshold(np.uint8(np.round(smooth * 255)), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    strong = smooth > max(share * otsu / 255, paper + 5 * noise, INK_FLOOR)
    weak = smooth > max(0.5 * share * otsu / 255, paper + 3 * noise, INK_FLOOR)
    weak = remove_ruled_lines(weak)  # here, where faint lines are whole: else they would grow out of the digits
    _, labels = cv2.connectedComponents(np.uint8(weak), connectivity=8)
    return np.isin(labels, np.unique(labels[strong & weak]))  # hysteresis: faint stretches of a stroke stay joined


def line_thickness(mask, start, end, reach):
    """The MASK's ink across the segment from START to END (x, y), in pixels: the median, along the segment, of the
    ink within REACH across it. Strokes that cross a line do so along a small part of it; a "line" found within a
    shadow's solid band has ink all across it along most of its length."""
    (x1, y1), (x2, y2) = start, end
    length = max(1.0, float(np.hypot(x2 - x1, y2 - y1)))
    along = np.linspace(0, 1, max(2, int(length)))[:, None]
    across = np.arange(-(reach // 2), reach // 2 + 1)[None, :]
    normal = np.array([y1 - y2, x2 - x1]) / length
    xs = np.round(x1 + along * (x2 - x1) + across * normal[0]).astype(int)
    ys = np.round(y1 + along * (y2 - y1) + across * normal[1]).astype(int)
    inside = (xs >= 0) & (xs < mask.shape[1]) & (ys >= 0) & (ys < mask.shape[0])
    ink = np.zeros(xs.shape, bool)
    ink[inside] = mask[ys[inside], xs[inside]] > 0
    return float(np.median(ink.sum(axis=1)))


def remove_ruled_lines(mask):
    """Erase long straight lines thinner than a pen stroke (ruled or squared paper, page edges), each across the
    whole picture. Where a digit's stroke crosses a line, the stroke is kept: across the line, only ink thicker than
    the line survives."""
    h, w = mask.shape
    if min(h, w) < 100:  # too small to hold both a digit and ruled lines
        return mask
    binary = np.uint8(mask) * 255
    lines = cv2.HoughLinesP(binary, 1, np.pi / 360, threshold=int(0.4 * min(h, w)), minLineLength=0.5 * min(h, w),
                            maxLineGap=0.02 * min(h, w))
    if lines is None:
        return mask
    max_thickness = 0.02 * min(h, w)  # a pen stroke of a digit that big is thicker than this
    keep = binary.copy()
    for x1, y1, x2, y2 in lines.reshape(-1, 4).astype(int):  # (N, 1, 4) in OpenCV 4, (N, 4) in 5
        length = max(1.0, float(np.hypot(x2 - x1, y2 - y1)))
        thickness = line_thickness(mask, (x1, y1), (x2, y2), 3 * max_thickness)  # a band's fills all 3: no line
        if thickness > max_thickness:
            continue
        band_width = odd(thickness + 4)  # the line and 2 pixels each side
        band = np.zeros_like(binary)
        reach = (h + w) / length * np.array([x2 - x1, y2 - y1])  # drawn on across the picture: where a shadow
        # breaks a line, its stretches beyond the break are too short to be found alone, and were read as 1s (NOTES.md)
        start, end = (tuple(np.round(p).astype(int).tolist()) for p in ([x1, y1] - reach, [x2, y2] + reach))
        cv2.line(band, start, end, 255, thickness=band_width)
        across = np.zeros((band_width,) * 2, np.uint8)  # perpendicular to the line: ink that spans the band stays
        # (ink twice the line's width, as before, erased a bold 0's arcs where they run along a line: NOTES.md)
        c, (dx, dy) = across.shape[0] // 2, ((y1 - y2) / length, (x2 - x1) / length)
        cv2.line(across, (round(c - c * dx), round(c - c * dy)), (round(c + c * dx), round(c + c * dy)), 1)
        thick = cv2.morphologyEx(keep, cv2.MORPH_OPEN, across)  # keep, not binary: crossings of two lines go too
        keep[(band > 0) & (thick == 0)] = 0
    return keep > 0


def edge_contact(mask, labels, count, desk=None):
    """Per label of LABELS (COUNT of them), how far its ink in MASK runs along the picture's edge or the DESK's, in
    pixels; none in a tight crop, where nothing is a page's edge."""
    if min(mask.shape) <= TIGHT_CROP:
        return np.zeros(count)
    margin = max(1, round(0.01 * min(mask.shape)))
    frame = np.ones(mask.shape, bool)
    frame[margin:-margin, margin:-margin] = False
    if desk is not None and desk.any():
        frame |= cv2.dilate(np.uint8(desk), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0
    return np.bincount(labels[frame & mask], minlength=count) / margin  # pixels along the edge


def runs_along_edge(contact, shape):
    """Per label, from its CONTACT (edge_contact) in a picture of SHAPE: does it run along the edge for over a tenth
    of the picture's side? The page's edge, the table, a shadow's corner; a digit that only touches the edge with a
    stroke's end does not."""
    return contact > EDGE_RUN * min(shape)


def along_border(mask, labels, count, desk=None):
    """Labels of the pieces that run along the picture's edge, or the DESK's (runs_along_edge)."""
    return set(np.nonzero(runs_along_edge(edge_contact(mask, labels, count, desk), mask.shape))[0])


@dataclass(eq=False)  # identity: two pieces are never the same piece
class Piece:
    """Connected pieces of ink taken as one: their bounding box and their labels in the label image."""
    x0: int
    x1: int
    y0: int
    y1: int
    labels: list

    @property
    def height(self):
        return self.y1 - self.y0

    def gap(self, other):
        """Horizontal distance to OTHER (negative where they share columns)."""
        return max(other.x0 - self.x1, self.x0 - other.x1)

    def absorb(self, other):
        self.x0, self.x1 = min(self.x0, other.x0), max(self.x1, other.x1)
        self.y0, self.y1 = min(self.y0, other.y0), max(self.y1, other.y1)
        self.labels += other.labels
        other.labels = []


def pieces_by_column(mask, desk):
    """The label image, its stats, the ink's connected pieces, left to right, those that share columns and lie close
    in height merged (one digit's broken strokes), without dust, without what runs along the picture's edge or the
    DESK's (runs_along_edge) and without wedges touching it (is_wedge); and the distance transform of MASK."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(np.uint8(mask), connectivity=8)
    contact = edge_contact(mask, labels, count, desk)
    along = runs_along_edge(contact, mask.shape)
    kept = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= 4 and not along[i]]
    min_height = MIN_DIGIT_HEIGHT * min(mask.shape)
    tall = [stats[i, cv2.CC_STAT_AREA] for i in kept if stats[i, cv2.CC_STAT_HEIGHT] >= min_height]
    if tall:  # dust beside the strokes: much smaller than a typical tall piece (the median: a blob may be huge)
        kept = [i for i in kept if stats[i, cv2.CC_STAT_AREA] >= 0.05 * np.median(tall)]
    kept = [i for i in kept if not is_stray_speck(i, labels, stats, min_height)]
    pieces = []
    for i in sorted(kept, key=lambda i: stats[i, cv2.CC_STAT_LEFT]):
        x, y, w, h = (int(stats[i, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                  cv2.CC_STAT_HEIGHT))
        piece, last = Piece(x, x + w, y, y + h, [i]), pieces[-1] if pieces else None
        if last and -last.gap(piece) > 0.5 * min(w, last.x1 - last.x0) \
                and max(last.y0, y) - min(last.y1, y + h) < 0.5 * max(h, last.height):
            last.absorb(piece)
        else:
            pieces.append(piece)
    half_width = cv2.distanceTransform(np.uint8(mask), cv2.DIST_L2, 3)
    pieces = [p for p in pieces if not is_wedge(p, labels, stats, half_width, contact > 0)]  # nor a digit's part
    return labels, stats, pieces, half_width


def is_stray_speck(label, labels, stats, min_height):
    """Is the connected piece LABEL a speck of dirt: smaller than a digit, round and filled, and alone, no other ink
    within its own size of it? A fragment of a broken or outlined stroke has others close by; a speck joined to the
    digit above it made that digit seem taller, and the digit beside it was then off the line of writing."""
    x, y, w, h, area = (int(stats[label, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                        cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA))
    size = max(w, h)
    if size >= min_height or size > 2 * min(w, h) or area < 0.5 * w * h:
        return False
    y0, x0 = max(0, y - size), max(0, x - size)
    around = labels[y0:y + h + size, x0:x + w + size]
    near = cv2.dilate(np.uint8(around == label), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 1,) * 2))
    return not np.any((around > 0) & (around != label) & (near > 0))


def widest_stroke(piece, labels, stats, half_width):
    """The diameter of the widest circle inside the piece's ink: its stroke width, or more at a blob."""
    widest = 0.0
    for i in piece.labels:  # within each label's own box: not a pass over the whole image per label
        x, y, w, h = (int(stats[i, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                  cv2.CC_STAT_HEIGHT))
        widest = max(widest, half_width[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i].max())
    return 2 * widest


def is_wedge(piece, labels, stats, half_width, touching):
    """Does the piece touch the picture's or the desk's edge (TOUCHING, per label) and is it filled, its ink's area
    under FILLED times the square of its widest stroke? A shadow's wedge against the sheet's edge, not a pen's
    strokes; a digit clear of the edge may be as filled (a bold 8 whose small loops closed)."""
    if not touching[piece.labels].any():
        return False
    return stats[piece.labels, cv2.CC_STAT_AREA].sum() < FILLED * widest_stroke(piece, labels, stats, half_width) ** 2


def is_stroke(piece, width, stats, min_height):
    """Pen strokes: not a filled blob (a shadow's corner) nor a cloud of specks (noise)."""
    tallest = max(stats[i, cv2.CC_STAT_HEIGHT] for i in piece.labels)
    return width <= MAX_STROKE * max(piece.height, piece.x1 - piece.x0) \
        and tallest >= max(min_height, 0.5 * piece.height)


def is_sheet_edge(piece, shape):
    """A long thin piece running beside the picture's edge, within its outer band, or a short one lying wholly
    against the edge: the edge of a sheet on a desk or of a tilted page, left as a line where its dark side was cut
    away, or a stretch of it that a shadow cut short (writing keeps clear of the margins)."""
    h, w = shape
    width = piece.x1 - piece.x0
    beside_a_side = piece.x1 < MARGIN * w or piece.x0 > (1 - MARGIN) * w
    beside_top_or_bottom = piece.y1 < MARGIN * h or piece.y0 > (1 - MARGIN) * h
    upright = piece.height > 3 * width and piece.height > 0.3 * h and beside_a_side
    lying = width > 3 * piece.height and width > 0.3 * w and beside_top_or_bottom
    against = min(piece.x1, piece.y1, w - piece.x0, h - piece.y0) <= SLIVER * min(h, w)
    sliver = against and max(piece.height, width) < 0.5 * min(h, w)  # as short as the slivers measured (NOTES.md)
    return upright or lying or sliver


def faint_digits(contrast, mask, desk, digits, bold, reference, margin):
    """Digits in a thin, faint pen beside the DIGITS kept (Pieces; BOLD, their pixels) in a bold one: hairlines none
    of whose pixels reach the ink MASK's threshold (an outline font's), or ink that does but was dropped as far
    fainter than the bold digits (an outline's hairlines again). Pieces of a fainter ink mask, less the bold digits
    and their soft edges, that lie wholly in the line of writing (REFERENCE's rows and MARGIN), are nearly as tall as
    REFERENCE, lie mostly clear of every digit's columns but within a digit's height of one, and are strokes of some
    contrast. A hairline's dashes are joined first, and the pieces of one digit (sharing columns: its two hairlines,
    or the stretches of a broken one) are one digit before its height is measured. Boolean masks, left to right."""
    join = odd(max(3, round(0.05 * reference.height)))  # wider than the gaps between a hairline's dashes
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (join, join))
    faint = ink_mask(contrast, FAINT_INK) & ~bold
    apart = faint & ~(cv2.dilate(np.uint8(bold), disc) > 0)  # a faint digit touching a bold one joins its soft edge
    joined = cv2.dilate(np.uint8(apart), disc) > 0  # ...and, joined, reaches back to the bold digit, not into it
    labels, stats, pieces, half_width = pieces_by_column(joined, desk)
    beside = []  # in the line's rows, mostly clear of every digit but near one; those sharing columns are one digit's
    for piece in pieces:  # (the broken hairline of an outlined 6: its stem, its bowl and its foot apart)
        in_rows = reference.y0 - margin <= piece.y0 and piece.y1 <= reference.y1 + margin
        if in_rows and -0.5 * (piece.x1 - piece.x0) < min(piece.gap(d) for d in digits) <= reference.height:
            if beside and beside[-1].gap(piece) < 0:
                beside[-1].absorb(piece)
            else:
                beside.append(piece)
    found = []
    for piece in beside:
        if piece.height < 0.75 * reference.height:
            continue  # shorter than a digit of the line
        region = np.isin(labels, piece.labels) & faint  # a pass over the whole picture: only for pieces in the line
        width = widest_stroke(piece, labels, stats, half_width)
        if contrast[region].mean() < FAINT_CONTRAST or is_sheet_edge(piece, mask.shape) \
                or piece.x1 - piece.x0 >= FLAT * piece.height \
                or not is_stroke(piece, width, stats, MIN_DIGIT_HEIGHT * min(mask.shape)):
            continue  # too faint, or not a pen's strokes: a shadow's band, a page's edge, a line's stretch
        found.append(region)
    return found


def has_a_loop(piece, labels):
    """Does the piece enclose paper, as a filled-in 0's or 9's eye does and a blot seldom does?"""
    box = np.uint8(np.isin(labels[piece.y0:piece.y1, piece.x0:piece.x1], piece.labels))
    _, hierarchy = cv2.findContours(box, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())  # a contour inside another: a hole


def digit_regions(mask, contrast, desk):
    """Boolean masks of the digits, left to right, on the line of writing of the biggest, clearest digit, and of the
    faint digits beside them (faint_digits; not in a crop around its digit). Touching digits stay one region."""
    labels, stats, pieces, half_width = pieces_by_column(mask, desk)
    widths = {id(p): widest_stroke(p, labels, stats, half_width) for p in pieces}
    contrast_sums = np.bincount(labels.ravel(), weights=contrast.ravel(), minlength=len(stats))

    def mean_contrast(piece):
        return contrast_sums[piece.labels].sum() / stats[piece.labels, cv2.CC_STAT_AREA].sum()

    strokes = [p for p in pieces if is_stroke(p, widths[id(p)], stats, MIN_DIGIT_HEIGHT * min(mask.shape))
               and not is_sheet_edge(p, mask.shape) and p.x1 - p.x0 < FLAT * p.height]
    if len(strokes) >= 3:  # one pen wrote them all: a piece much wider than the others is a blob
        typical_width, typical_height = np.median([(widths[id(p)], p.height) for p in strokes], axis=0)
        strokes = [p for p in strokes if widths[id(p)] <= 2.5 * typical_width
                   or p.height <= 1.25 * typical_height and has_a_loop(p, labels)]  # a 0 or a 9 filled in
    if not strokes:
        return []
    reference = max(strokes, key=lambda p: p.height * mean_contrast(p))
    margin = 0.25 * reference.height
    in_row = [p for p in pieces if reference.y0 - margin <= (p.y0 + p.y1) / 2 <= reference.y1 + margin]
    digits = [p for p in in_row if p in strokes and p.height >= 0.5 * reference.height]
    for piece in in_row:  # a small piece beside a digit is a part of it (a 5's detached flag)
        nearest = min(digits, key=piece.gap)
        if piece not in digits and piece.gap(nearest) < margin:
            nearest.absorb(piece)
    for left, right in zip(digits[:-1], digits[1:]):  # a 4 written in two strokes: the shorter hangs up high
        tall, short = (left, right) if left.height >= right.height else (right, left)
        if left.gap(right) < 0.06 * tall.height and short.y0 >= tall.y0 - 0.1 * tall.height \
                and short.y1 <= tall.y1 - 0.2 * tall.height:
            right.absorb(left)
    digits = [p for p in digits if p.labels]
    strongest = max(mean_contrast(p) for p in digits)
    digits = [p for p in digits if mean_contrast(p) >= max(MIN_CONTRAST, 0.4 * strongest)]  # not shadows
    if not digits:
        return []
    regions = [np.isin(labels, p.labels) for p in digits]
    if min(mask.shape) > TIGHT_CROP:  # a crop around its digit has no line of writing, and the faint dashes that a
        # scanner left beside some of MNIST's digits are no digit (they were read as a 1: "9" read "91")
        regions += faint_digits(contrast, mask, desk, digits, np.any(regions, axis=0), reference, margin)
    return sorted(regions, key=lambda region: np.nonzero(region.any(axis=0))[0][0])


def mnist_style(ink, width=28):
    """MNIST's own preprocessing of light-on-black ink (float, any size): the ink's bounding box scaled into 20x20
    keeping its aspect ratio, placed in 28x28 with its centre of mass at the centre. Returns float32 (28, 28).
    A wider WIDTH (PAIR_WIDTH) gives the box WIDTH - 8 columns and returns (28, WIDTH): two digits side by side."""
    rows, cols = np.nonzero(ink > 0.2 * ink.max())
    crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = crop.shape
    scale = min(20 / h, (width - 8) / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(Image.fromarray(np.float32(crop)).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    digit = np.clip(digit, 0, None)
    digit /= max(digit.max(), 1e-6)  # thin strokes fade when shrunk: restore full ink

    canvas = np.zeros((28, width), dtype=np.float32)
    mass = digit.sum()
    cy = (digit.sum(1) * np.arange(digit.shape[0])).sum() / mass
    cx = (digit.sum(0) * np.arange(digit.shape[1])).sum() / mass
    top = int(np.clip(round(14 - cy), 0, 28 - digit.shape[0]))  # MNIST puts the centre of mass at pixel (14, 14)
    left = int(np.clip(round(width / 2 - cx), 0, width - digit.shape[1]))
    canvas[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return canvas


@dataclass
class Digit:
    """A digit as MNIST would have it, float32 (28, 28) in [0, 1], and, where its ink is wide enough to be two
    digits written touching, the same ink cut in two along each of the paths that cross least ink, and straight down
    at several columns where it is wider: (left, right) Digits. The reader decides, by the model's confidence,
    whether it is one digit or two and where the cut goes."""
    image: np.ndarray
    aspect: float  # the ink's width over its height
    cuts: list = field(default_factory=list)
    pair: np.ndarray | None = None  # where it may be two digits: the ink as two MNIST digits side by side (28, 56)
    contrast: float = 1.0  # the ink's mean contrast against the paper: a faint mark is weak evidence of a digit


def seams(region, count=5):
    """Up to COUNT paths from REGION's top row to its bottom row, each moving at most one column a row and kept
    between a fifth and four fifths of its width, that cross the least ink, their ends a stroke's width apart:
    where two touching or overlapping digits may be cut apart. A path may cross two strokes (where two digits
    overlap, the right side of one and the left side of the other), not more. Each is an array of one column per
    row."""
    h, w = region.shape
    lo, hi = int(0.2 * w), max(int(0.2 * w) + 1, int(0.8 * w))
    ink = region[:, lo:hi].astype(np.float32)
    cost = ink.copy()  # the least ink crossed on the way down to each pixel
    step = np.zeros(ink.shape, np.int8)  # where that way came from: -1, 0 or +1 columns
    for y in range(1, h):
        above = cost[y - 1]
        options = np.stack([np.r_[np.inf, above[:-1]], above, np.r_[above[1:], np.inf]]) + [[1e-3], [0], [1e-3]]
        step[y] = options.argmin(axis=0) - 1  # straight down when equal: a cut is as short as it can be
        cost[y] += options.min(axis=0)
    stroke, chosen = max(1, w // 10), []
    for end in np.argsort(cost[-1], kind="stable"):
        if any(abs(int(end) - path[-1] + lo) < stroke for path in chosen):
            continue
        path = np.empty(h, np.int64)
        path[-1] = end
        for y in range(h - 1, 0, -1):
            path[y - 1] = path[y] + step[y, path[y]]
        runs = np.count_nonzero(np.diff(np.r_[0, ink[np.arange(h), path].astype(np.int8), 0]) == 1)
        if runs <= 2:
            chosen.append(path + lo)
        if len(chosen) == count:
            break
    return chosen


def tall_enough(half, height):
    """Is HALF of a piece as tall as a digit beside another would be (not the corner of one digit)?"""
    rows = np.nonzero(half.any(axis=1))[0]
    return len(rows) > 0 and rows[-1] - rows[0] + 1 >= 0.7 * height


def as_digit(region, contrast, cut=True):
    """REGION (a boolean mask) as a Digit: its ink in MNIST's form, and (CUT) its cuts in two where it is wide.
    Halves are not cut again: two touching digits are read, three are not."""
    near = cv2.dilate(np.uint8(region), np.ones((3, 3), np.uint8)) > 0  # keep the strokes' soft edges
    ink = np.where(near, contrast, 0)
    ink = np.clip(ink / np.percentile(ink[region], 90), 0, 1)  # faint pencil and dark ink alike reach full ink
    rows, cols = np.nonzero(region)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    cuts, pair = [], None
    if cut and x1 - x0 >= PAIR_ASPECT * (y1 - y0) and x1 - x0 >= 8:
        pair = mnist_style(ink, PAIR_WIDTH)
    if cut and x1 - x0 >= SPLIT_ASPECT * (y1 - y0) and x1 - x0 >= 8:
        paths = seams(region[y0:y1, x0:x1])
        if x1 - x0 >= STRAIGHT_CUT_ASPECT * (y1 - y0):
            paths += [np.full(y1 - y0, int(f * (x1 - x0))) for f in np.linspace(0.25, 0.75, 11)]
        for path in paths:
            on_left = np.zeros(region.shape, bool)
            on_left[y0:y1, x0:x1] = np.arange(x1 - x0) < path[:, None]
            left, right = region & on_left, region & ~on_left
            if tall_enough(left, y1 - y0) and tall_enough(right, y1 - y0):  # not a slanted 1 cut across
                cuts.append((as_digit(left, contrast, cut=False), as_digit(right, contrast, cut=False)))
    return Digit(mnist_style(ink), (x1 - x0) / (y1 - y0), cuts, pair, float(contrast[region].mean()))


def without_shadow_corners(regions, contrast, rgb, thumb):
    """REGIONS less the corners of shadows that the paper's closing filled in: against paper that follows a shadow
    (closing_by_reconstruction of THUMB) such a corner has next to no CONTRAST left, and a digit keeps most of its
    own. RGB and THUMB as from as_dark_ink. A tight crop has no shadow, and its thick strokes would outlast the
    reconstruction's dilation."""
    if not regions or min(rgb.shape[:2]) <= TIGHT_CROP:
        return regions
    shadowed = full_size_paper(rgb, thumb, closing_by_reconstruction)
    return [r for r in regions if darker_than(rgb[r], shadowed[r]).mean() >= SHADOW_SHARE * contrast[r].mean()]


def regions_and_contrast(rgb, thumb, small_desk):
    """(The digits' regions of RGB, as from digit_regions, shadows' corners left out; the contrast; the desk at
    RGB's size), given the small copy THUMB and the desk on it, SMALL_DESK, as from as_dark_ink."""
    contrast, desk = sheet_contrast(rgb, thumb, small_desk)
    regions = without_shadow_corners(digit_regions(ink_mask(contrast), contrast, desk), contrast, rgb, thumb)
    return regions, contrast, desk


def covers_a_side(desk):
    """Does the DESK (a mask) run along a whole side of the picture, as beyond a sheet's edge, which crosses it?"""
    return bool(desk[:, 0].all() or desk[0].all() or desk[:, -1].all() or desk[-1].all())


def runs_on_into(found, regions, desk):
    """Do the regions FOUND as if there were no desk hold each of REGIONS, and more, and are those more mostly on the
    DESK and each within a digit's height of another region found: the line of writing runs on into what was taken
    for desk?"""
    def covers(a, b):
        return (a & b).sum() >= 0.5 * b.sum()

    def box(region):  # (first column, last column + 1, height)
        cols, rows = np.nonzero(region.any(axis=0))[0], np.nonzero(region.any(axis=1))[0]
        return cols[0], cols[-1] + 1, rows[-1] + 1 - rows[0]

    boxes = [box(f) for f in found]
    beside_another = [any(max(x0 - x1_other, x0_other - x1) <= height
                          for j, (x0_other, x1_other, _) in enumerate(boxes) if j != i)
                      for i, (x0, x1, height) in enumerate(boxes)]
    more = [i for i, f in enumerate(found) if not any(covers(f, r) for r in regions)]
    return len(found) > len(regions) and all(any(covers(f, r) for f in found) for r in regions) \
        and all(covers(desk, found[i]) and beside_another[i] for i in more)


def digit_images(rgb):
    """The digits of an RGB image, left to right, as Digits; ImageError if there is none. A desk that covers no
    whole side of the picture may be a shadow's corner: where the digits found as if there were none are those
    found with it and more, on it and beside the others, they are the digits (the desk took the end of a line of
    writing: NOTES.md)."""
    rgb, thumb, small_desk = as_dark_ink(rgb)
    regions, contrast, desk = regions_and_contrast(rgb, thumb, small_desk)
    if regions and desk.any() and not covers_a_side(small_desk):
        found, contrast_found, _ = regions_and_contrast(rgb, small_copy(rgb), np.zeros_like(small_desk))
        if runs_on_into(found, regions, desk):
            regions, contrast = found, contrast_found
    if not regions:
        raise ImageError("no digit found (no ink stands out from the paper)")
    return [as_digit(region, contrast) for region in regions]


def read_digits(path):
    """The digits in the image file at PATH, left to right, as Digits."""
    return digit_images(read_rgb(path))
