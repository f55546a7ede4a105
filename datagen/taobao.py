"""Synthetic Taobao display-ad impressions in EasyRec's `aitm_on_taobao` layout.

Every row is one impression. Clicks and purchases are drawn from known
probabilities that depend on structure a model can learn:

* user-ad affinity: a dot product of latent user and ad vectors. A user's
  vector follows the profile (`cms_segid`, `age_level`, `final_gender_code`)
  plus a personal part; an ad's follows its category plus its own part,
* tag matches: the ad's category / brand appears in the user's tag lists,
* price sensitivity: purchase odds fall with log(price), less so for users
  with a high `pvalue_level` (spending power),
* quality and activity: ad quality from its category and brand, purchase
  quality from its customer, user activity from `shopping_level`,
  `new_user_class_level` and `occupation` (each plus a small per-entity
  part), and the placement (`pid`).

Most of the signal sits in columns seen thousands of times; the per-user and
per-ad parts (USER_NOISE, AD_NOISE) can only be learned from an entity's own
few impressions, so even a perfect learner stays below the oracle on small data.

Impressions repeat user-ad pairs, as real display-ad logs do (one row per
impression, as Taobao's `raw_sample`): each user has a few ads of their own
(`Repeats.pool_mean` on average, drawn by ad popularity) that take
`Repeats.share` of the user's impressions, shown again and again; the rest are
drawn from all ads. Every impression's labels are drawn anew from the same
true probabilities, so copies of one feature vector carry different labels.
`Repeats(share=0)` gives the world without repeated pairs, draw for draw.

`buy=1` only where `clk=1`. The base rates are solved for so that about 5% of
impressions are clicked and about 0.5% bought. The true probabilities can be
written beside the data, so a benchmark can compare a model with the oracle.

`price` is written as EasyRec's Taobao sample data has it: a price level
0..49 (log-price buckets), read by an IdFeature with `num_buckets: 50`.
With `with_cart`, a third funnel step `cart` (add to cart) sits between
click and purchase: `buy=1` only where `cart=1`, `cart=1` only where
`clk=1`, and the purchase probabilities are unchanged.
"""

import csv
import dataclasses
import os
from typing import List, Optional, Tuple

import numpy as np

from models.config import load_config
from pipeline.configs import CONFIG_PATH


def columns(with_cart: bool = False) -> Tuple[str, ...]:
  """The CSV header: data_config.input_fields of the default config (EasyRec's
  aitm_on_taobao), in file order; with the add-to-cart step after the click.
  Read when data is written, not at import."""
  names = tuple(c.name for c in load_config(CONFIG_PATH).columns)
  return names[:1] + ("cart",) + names[1:] if with_cart else names


PIDS = ("430548_1007", "430539_1007")
PRICE_LEVELS = 50
LATENT_DIM = 4
# Scale of the personal (per-user) and per-ad parts of taste and quality, which
# only a user's or ad's own few impressions reveal.
USER_NOISE = 0.5
AD_NOISE = 0.5


@dataclasses.dataclass(frozen=True)
class Repeats:
  """How a user's impressions concentrate on a few ads.

  Taobao's display-ad logs (Tianchi dataset 56, raw_sample) show 26.6M
  impressions to 1.14M users of 846k ads in 8 days: 23 impressions per user and
  31 per ad (this world: 20 and 40). How many of a user's impressions repeat an
  ad is not in the published statistics; half of them, on about 3 ads of the
  user's own, is this project's choice (see docs/data.md)."""
  share: float = 0.5      # of each user's impressions, shown one of the user's own ads
  pool_mean: float = 3.0  # ads of a user's own: 1 + Poisson(pool_mean - 1)

  def __post_init__(self):
    if not 0 <= self.share <= 1:
      raise ValueError(f"Repeats.share must be in [0, 1], got {self.share}")
    if self.pool_mean < 1:
      raise ValueError(f"Repeats.pool_mean must be at least 1, got {self.pool_mean}")


NO_REPEATS = Repeats(share=0.0)


@dataclasses.dataclass(frozen=True)
class Rates:
  """The target shares of impressions clicked, bought (and with `with_cart`,
  added to the cart); the base rates of generate's funnel are solved for them."""
  click: float = 0.05
  buy: float = 0.005
  cart: float = 0.015  # only with_cart


def _solve_offset(logits: np.ndarray, target: float,
                  weights: Optional[np.ndarray] = None) -> float:
  """The b for which the (weighted) mean of sigmoid(logits + b) is target."""
  lo, hi = -30.0, 30.0
  for _ in range(60):
    mid = (lo + hi) / 2
    p = 1 / (1 + np.exp(-(logits + mid)))
    mean = np.average(p, weights=weights)
    lo, hi = (mid, hi) if mean < target else (lo, mid)
  return (lo + hi) / 2


def _tags(rng, user_vec: np.ndarray, tag_vec: np.ndarray, max_len: int,
          empty_share: float):
  """Per user, up to max_len tag ids drawn by softmax(2 * user_vec . tag_vec).

  The scores are worked out a block of users at a time: all at once they are a
  users x tags matrix, which grows with the square of the rows (3M rows: 150,000
  users x 6,250 brands, 7.5 GB per copy)."""
  out = []
  lengths = rng.integers(1, max_len + 1, size=len(user_vec))
  lengths[rng.random(len(user_vec)) < empty_share] = 0
  for start in range(0, len(user_vec), _TAG_BLOCK):
    scores = 2.0 * user_vec[start:start + _TAG_BLOCK] @ tag_vec.T
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for row, n in zip(probs, lengths[start:start + _TAG_BLOCK]):
      out.append(rng.choice(len(row), size=n, replace=False, p=row) if n else
                 np.empty(0, dtype=int))
  return out


# Users per block of _tags' score matrix.
_TAG_BLOCK = 4096


def _popularity(n: int, exponent: float) -> np.ndarray:
  """Share of impressions by popularity rank: (rank + 10) ** -exponent, normalised."""
  weights = (np.arange(n) + 10.0) ** -exponent
  return weights / weights.sum()


def _repeat_pairs(rng, user: np.ndarray, ad: np.ndarray, n_users: int,
                  ad_of_rank: np.ndarray, ad_popularity: np.ndarray,
                  repeats: Repeats) -> np.ndarray:
  """`ad` with `repeats.share` of every user's impressions moved to the user's own
  few ads. Its own random stream, so the rest of the world is drawn as without
  repeats."""
  pool_size = 1 + rng.poisson(repeats.pool_mean - 1, n_users)
  pools = ad_of_rank[rng.choice(len(ad_of_rank), size=(n_users, pool_size.max()),
                                p=ad_popularity)]
  from_pool = rng.random(len(user)) < repeats.share
  slot = np.minimum((rng.random(len(user)) * pool_size[user]).astype(int),
                    pool_size[user] - 1)
  return np.where(from_pool, pools[user, slot], ad)


def price_level(price: np.ndarray) -> np.ndarray:
  """Prices -> levels 0..49, 8 levels per e-fold of price."""
  return np.clip(np.floor((np.log1p(price) - 1.0) * 8), 0, PRICE_LEVELS - 1).astype(int)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
  """Probabilities from logits."""
  return 1 / (1 + np.exp(-logits))


@dataclasses.dataclass(frozen=True)
class _Sizes:
  """How many users, ads and ad hierarchy entities a world of `rows` impressions has."""
  users: int
  ads: int
  campaigns: int
  customers: int
  brands: int
  cates: int


def _sizes(rows: int) -> _Sizes:
  """About 20 impressions per user and 40 per ad, with floors for small worlds."""
  n_ads = max(100, rows // 40)
  n_campaigns = max(50, n_ads // 3)
  n_customers = max(30, n_campaigns // 2)
  return _Sizes(users=max(200, rows // 20), ads=n_ads, campaigns=n_campaigns,
                customers=n_customers, brands=max(40, n_customers // 2),
                cates=min(300, max(30, rows // 500)))


@dataclasses.dataclass(frozen=True)
class _Ads:
  """Per-ad hierarchy, taste vector, qualities and price; `*_noise` are the per-ad
  parts (AD_NOISE) inside `vec`, `quality` and `buy_quality`."""
  cate_vec: np.ndarray    # per category
  brand_vec: np.ndarray   # per brand
  cate: np.ndarray
  campaign: np.ndarray
  customer: np.ndarray
  brand: np.ndarray
  vec: np.ndarray
  vec_noise: np.ndarray
  quality: np.ndarray
  quality_noise: np.ndarray
  buy_quality: np.ndarray
  buy_quality_noise: np.ndarray
  price: np.ndarray

  def without_personal_parts(self) -> "_Ads":
    """The same ads with the per-ad parts taken out."""
    return dataclasses.replace(self, vec=self.vec - self.vec_noise,
                               quality=self.quality - self.quality_noise,
                               buy_quality=self.buy_quality - self.buy_quality_noise)


def _draw_ads(rng, sizes: _Sizes) -> _Ads:
  """Ads: a hierarchy adgroup -> campaign -> customer -> brand, and a category.
  An ad's taste vector and quality come mostly from its category, brand and
  customer (seen thousands of times in the data), a little from the ad itself."""
  cate_vec = rng.normal(size=(sizes.cates, LATENT_DIM))
  cate = rng.integers(0, sizes.cates, sizes.ads)
  campaign = rng.integers(0, sizes.campaigns, sizes.ads)
  campaign_customer = rng.integers(0, sizes.customers, sizes.campaigns)
  customer_brand = rng.integers(0, sizes.brands, sizes.customers)
  customer = campaign_customer[campaign]
  brand = customer_brand[customer]
  vec_noise = AD_NOISE * rng.normal(size=(sizes.ads, LATENT_DIM))
  cate_quality = rng.normal(0, 0.4, sizes.cates)
  brand_quality = rng.normal(0, 0.3, sizes.brands)
  customer_buy_quality = rng.normal(0, 0.5, sizes.customers)
  quality_noise = rng.normal(0, AD_NOISE * 0.4, sizes.ads)
  buy_quality_noise = rng.normal(0, AD_NOISE * 0.4, sizes.ads)
  price = np.round(np.exp(rng.normal(4.0, 1.0, sizes.ads)), 2)
  brand_vec = rng.normal(size=(sizes.brands, LATENT_DIM))
  return _Ads(
      cate_vec=cate_vec, brand_vec=brand_vec, cate=cate, campaign=campaign,
      customer=customer, brand=brand, vec=cate_vec[cate] + vec_noise, vec_noise=vec_noise,
      quality=cate_quality[cate] + brand_quality[brand] + quality_noise,
      quality_noise=quality_noise,
      buy_quality=customer_buy_quality[customer] + buy_quality_noise,
      buy_quality_noise=buy_quality_noise, price=price)


@dataclasses.dataclass(frozen=True)
class _Users:
  """Per-user profile columns, taste vector, activity and tag lists; `vec_noise`
  and `activity_noise` are the personal parts (USER_NOISE)."""
  segid: np.ndarray
  group: np.ndarray
  gender: np.ndarray
  age: np.ndarray
  pvalue: np.ndarray
  shopping: np.ndarray
  occupation: np.ndarray
  new_class: np.ndarray
  pvalue_missing: np.ndarray
  new_class_missing: np.ndarray
  vec: np.ndarray
  vec_noise: np.ndarray   # before the 1 / sqrt(LATENT_DIM) scaling of vec
  activity: np.ndarray
  activity_noise: np.ndarray
  cates: List[np.ndarray]   # tag_category_list, category indices
  brands: List[np.ndarray]  # tag_brand_list, brand indices

  def without_personal_parts(self) -> "_Users":
    """The same users with the personal parts taken out."""
    return dataclasses.replace(self, vec=self.vec - self.vec_noise / np.sqrt(LATENT_DIM),
                               activity=self.activity - self.activity_noise)


def _draw_users(rng, n_users: int, ads: _Ads) -> _Users:
  """Users: profile columns; a latent taste that follows the profile (segment,
  age, gender) plus a personal part; tag lists that follow the taste."""
  segid = rng.integers(0, 98, n_users)
  group = rng.integers(0, 13, n_users)
  gender = rng.integers(1, 3, n_users)
  age = rng.integers(0, 7, n_users)
  pvalue = rng.integers(1, 4, n_users)
  shopping = rng.integers(1, 4, n_users)
  occupation = rng.integers(0, 2, n_users)
  new_class = rng.integers(1, 5, n_users)
  pvalue_missing = rng.random(n_users) < 0.3
  new_class_missing = rng.random(n_users) < 0.2
  profile_vec = (0.8 * rng.normal(size=(98, LATENT_DIM))[segid]
                 + 0.5 * rng.normal(size=(7, LATENT_DIM))[age]
                 + 0.4 * rng.normal(size=(3, LATENT_DIM))[gender])
  vec_noise = USER_NOISE * rng.normal(size=(n_users, LATENT_DIM))
  vec = (profile_vec + vec_noise) / np.sqrt(LATENT_DIM)
  activity_noise = rng.normal(0, USER_NOISE * 0.4, n_users)
  activity = (0.3 * (shopping - 2) + np.array([0.0, 0.3, 0.1, -0.1, -0.3])[new_class]
              + 0.2 * occupation + activity_noise)
  return _Users(
      segid=segid, group=group, gender=gender, age=age, pvalue=pvalue, shopping=shopping,
      occupation=occupation, new_class=new_class, pvalue_missing=pvalue_missing,
      new_class_missing=new_class_missing, vec=vec, vec_noise=vec_noise,
      activity=activity, activity_noise=activity_noise,
      cates=_tags(rng, vec, ads.cate_vec, 5, 0.1),
      brands=_tags(rng, vec, ads.brand_vec, 4, 0.25))


@dataclasses.dataclass(frozen=True)
class _Impressions:
  """Per row: user and ad index, placement, and whether the ad's category / brand
  is in the user's tag lists."""
  user: np.ndarray
  ad: np.ndarray
  pid: np.ndarray
  cate_match: np.ndarray
  brand_match: np.ndarray


def _draw_impressions(rng, rows: int, seed: int, repeats: Repeats, users: _Users,
                      ads: _Ads) -> _Impressions:
  """Impressions: popular users and ads are seen more often, by a power law whose
  head is flattened (rank + 10): a plain Zipf draw gave one user a quarter of
  all impressions."""
  n_users, n_ads = len(users.segid), len(ads.cate)
  user = rng.choice(n_users, size=rows, p=_popularity(n_users, 1.1))
  user = rng.permutation(n_users)[user]
  ad_popularity = _popularity(n_ads, 1.0)
  ad = rng.choice(n_ads, size=rows, p=ad_popularity)
  ad_of_rank = rng.permutation(n_ads)
  ad = ad_of_rank[ad]
  pid = rng.integers(0, 2, rows)
  if repeats.share > 0:
    ad = _repeat_pairs(np.random.default_rng([seed, 1]), user, ad, n_users,
                       ad_of_rank, ad_popularity, repeats)
  cate_sets = [set(t.tolist()) for t in users.cates]
  brand_sets = [set(t.tolist()) for t in users.brands]
  cate_match = np.array([c in s for c, s in zip(ads.cate[ad], (cate_sets[u] for u in user))])
  brand_match = np.array([b in s for b, s in zip(ads.brand[ad], (brand_sets[u] for u in user))])
  return _Impressions(user, ad, pid, cate_match, brand_match)


def _logits(users: _Users, ads: _Ads, shown: _Impressions) -> Tuple[np.ndarray, np.ndarray]:
  """Per impression, the click and the buy-given-click logit before the base rates."""
  user, ad = shown.user, shown.ad
  price_sensitivity = np.array([0.0, 0.9, 0.6, 0.3])[users.pvalue[user]]
  log_price = np.log1p(ads.price[ad])
  affinity = np.sum(users.vec[user] * ads.vec[ad], axis=1)
  click = (1.5 * affinity + 1.0 * shown.cate_match + 0.7 * shown.brand_match
           + ads.quality[ad] + users.activity[user] + 0.4 * shown.pid)
  buy = (1.0 * affinity + 1.0 * shown.brand_match + 0.4 * (users.shopping[user] - 2)
         - price_sensitivity * (log_price - 4.0) + ads.buy_quality[ad])
  return click, buy


@dataclasses.dataclass(frozen=True)
class _Funnel:
  """The base-rate offsets and the true probabilities of click and buy | click."""
  click_offset: float
  buy_offset: float
  p_click: np.ndarray
  buy_logit: np.ndarray  # with buy_offset
  p_buy_given_click: np.ndarray


def _funnel(click_logit: np.ndarray, buy_logit: np.ndarray, rates: Rates) -> _Funnel:
  """Solves the offsets that give `rates.click` and `rates.buy` on average."""
  click_offset = _solve_offset(click_logit, rates.click)
  p_click = _sigmoid(click_logit + click_offset)
  buy_offset = _solve_offset(buy_logit, rates.buy / rates.click, weights=p_click)
  buy_logit = buy_logit + buy_offset
  return _Funnel(click_offset, buy_offset, p_click, buy_logit, _sigmoid(buy_logit))


def _shared_truth(users: _Users, ads: _Ads, shown: _Impressions, funnel: _Funnel):
  """{"clk": p, "buy": p} scored without the per-user and per-ad parts, at the
  world's own offsets."""
  click, buy = _logits(users.without_personal_parts(), ads.without_personal_parts(), shown)
  p_click = _sigmoid(click + funnel.click_offset)
  return {"clk": p_click, "buy": p_click / (1 + np.exp(-(buy + funnel.buy_offset)))}


def _p_cart_given_click(funnel: _Funnel, rates: Rates) -> np.ndarray:
  """P(cart | click) >= P(buy | click) by construction, so buy | cart is a probability."""
  buy_logit, p_click = funnel.buy_logit, funnel.p_click
  cart_logit = buy_logit + _solve_offset(buy_logit, rates.cart / rates.click,
                                         weights=p_click) - _solve_offset(
      buy_logit, rates.buy / rates.click, weights=p_click)
  return np.maximum(_sigmoid(cart_logit), funnel.p_buy_given_click)


def _ids(prefix_offset: int, values) -> List[str]:
  """Indices as id strings, offset so that each id column has its own range."""
  return [str(prefix_offset + int(v)) for v in values]


def _maybe(values, missing) -> List[str]:
  """Values as strings, "" where missing."""
  return ["" if m else str(int(v)) for v, m in zip(values, missing)]


def _feature_columns(users: _Users, ads: _Ads, shown: _Impressions):
  """The feature columns of every impression, as the CSV has them (strings)."""
  user, ad = shown.user, shown.ad
  return {
      "pid": [PIDS[p] for p in shown.pid],
      "adgroup_id": _ids(100000, ad),
      "cate_id": _ids(1000, ads.cate[ad]),
      "campaign_id": _ids(300000, ads.campaign[ad]),
      "customer": _ids(500000, ads.customer[ad]),
      "brand": _ids(700000, ads.brand[ad]),
      "user_id": _ids(1000000, user),
      "cms_segid": [str(v) for v in users.segid[user]],
      "cms_group_id": [str(v) for v in users.group[user]],
      "final_gender_code": [str(v) for v in users.gender[user]],
      "age_level": [str(v) for v in users.age[user]],
      "pvalue_level": _maybe(users.pvalue[user], users.pvalue_missing[user]),
      "shopping_level": [str(v) for v in users.shopping[user]],
      "occupation": [str(v) for v in users.occupation[user]],
      "new_user_class_level": _maybe(users.new_class[user], users.new_class_missing[user]),
      "tag_category_list": ["|".join(str(1000 + c) for c in users.cates[u]) for u in user],
      "tag_brand_list": ["|".join(str(700000 + b) for b in users.brands[u]) for u in user],
      "price": [str(v) for v in price_level(ads.price[ad])],
  }


def _labels_and_truth(rng, users: _Users, ads: _Ads, shown: _Impressions, rates: Rates,
                      with_cart: bool, personal_parts: bool):
  """Draws clk, buy (and cart) for every impression; returns them with the true
  probabilities, as generate does."""
  funnel = _funnel(*_logits(users, ads, shown), rates)
  rows = len(shown.user)
  clk = (rng.random(rows) < funnel.p_click).astype(int)
  buy_draw = rng.random(rows)
  labels = {"clk": clk.tolist(),
            "buy": (clk * (buy_draw < funnel.p_buy_given_click).astype(int)).tolist()}
  p_buy = funnel.p_click * funnel.p_buy_given_click
  truth = {"clk": funnel.p_click, "buy": p_buy}
  if not personal_parts:
    truth = _shared_truth(users, ads, shown, funnel)
  if with_cart:
    # Reusing the purchase draw keeps every purchase inside the carts.
    p_cart_given_click = _p_cart_given_click(funnel, rates)
    labels["cart"] = (clk * (buy_draw < p_cart_given_click).astype(int)).tolist()
    truth = {"clk": funnel.p_click, "cart": funnel.p_click * p_cart_given_click, "buy": p_buy}
  return labels, truth


def generate(rows: int, seed: int = 0, rates: Rates = Rates(), with_cart: bool = False,
             personal_parts: bool = True, repeats: Repeats = Repeats()):
  """Returns (columns dict of per-row values, {"clk": p, ["cart": p,] "buy": p}).

  The probabilities are the true P(step | impression) of each row. With
  `personal_parts=False` (not with_cart) they leave out the per-user and per-ad
  parts (USER_NOISE, AD_NOISE): the same rows and labels, scored as a learner
  that knows the world's structure but no individual user or ad would score
  them, apart from what the tag lists reveal. A reference for what the
  non-id columns can explain, not a bound.
  """
  if with_cart and not personal_parts:
    raise ValueError("personal_parts=False is only for the click -> buy funnel")
  if rows <= 0:
    raise ValueError(f"rows must be positive, got {rows}")
  rng = np.random.default_rng(seed)
  sizes = _sizes(rows)
  ads = _draw_ads(rng, sizes)
  users = _draw_users(rng, sizes.users, ads)
  shown = _draw_impressions(rng, rows, seed, repeats, users, ads)
  labels, truth = _labels_and_truth(rng, users, ads, shown, rates, with_cart, personal_parts)
  cols = {"clk": labels.pop("clk"), "buy": labels.pop("buy"),
          **_feature_columns(users, ads, shown)}
  return {**cols, **labels}, truth  # cart, if any, last


# The file write_csv writes into its directory, and each span's.
DATA_FILE = "data.csv"


def _write_rows(path: str, header, cols) -> str:
  """Writes `cols` (column -> values) as CSV at `path`, header first, in `header`'s
  column order; makes the directory. Returns `path`."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(zip(*(cols[c] for c in header)))
  return path


def write_csv(out_dir: str, rows: int, seed: int = 0, rates: Rates = Rates(),
              truth_path: Optional[str] = None, file_name: str = DATA_FILE,
              with_cart: bool = False, repeats: Repeats = Repeats()) -> str:
  """Writes `out_dir/file_name` with a header; optionally the true probabilities
  (columns p_click[,p_cart],p_buy)."""
  cols, truth = generate(rows, seed, rates, with_cart, repeats=repeats)
  path = _write_rows(os.path.join(out_dir, file_name), columns(with_cart), cols)
  if truth_path:
    os.makedirs(os.path.dirname(os.path.abspath(truth_path)), exist_ok=True)
    names = {"clk": "p_click", "cart": "p_cart", "buy": "p_buy"}
    np.savetxt(truth_path, np.stack(list(truth.values()), axis=1), delimiter=",",
               header=",".join(names[k] for k in truth), comments="", fmt="%.6g")
  return path


SPAN_DIR = "span-{}"
# The numeric features (written as integers, never missing).
_SHIFTABLE = ("price",)
# The first span a shift changes: span 1 is the world before it.
SHIFT_FROM_SPAN = 2


def parse_shift(text: str) -> Tuple[str, float]:
  """'FEATURE=FACTOR', e.g. 'price=3' -> write_spans' shift ('price', 3.0)."""
  column, _, factor = text.partition("=")
  try:
    return column, float(factor)
  except ValueError:
    raise ValueError(f"{text!r}: write FEATURE=FACTOR, e.g. price=3") from None


def write_spans(out_dir: str, rows: int, spans: int, seed: int = 0,
                shift: Optional[Tuple[str, float]] = None, shift_from: int = SHIFT_FROM_SPAN,
                with_cart: bool = False, repeats: Repeats = Repeats()) -> List[str]:
  """Writes `out_dir/span-1/data.csv` .. `span-<spans>/data.csv`, `rows` each: the
  consecutive impressions of one world (one seed), as days of one site's logs.

  `shift=(column, factor)` multiplies a numeric column by factor from span
  `shift_from` on, clipped to the column's range in the generated data (so the
  schema's domain still holds: a change of distribution, not of the contract)."""
  if spans < 1:
    raise ValueError(f"spans must be at least 1, got {spans}")
  cols, _ = generate(rows * spans, seed, with_cart=with_cart, repeats=repeats)
  header = columns(with_cart)
  if shift is not None:
    column, factor = shift
    if column not in _SHIFTABLE:
      raise ValueError(f"can only shift a numeric feature ({', '.join(_SHIFTABLE)}), "
                       f"got {column!r}")
    values = np.asarray(cols[column]).astype(np.int64)
  paths = []
  for span in range(1, spans + 1):
    part = {c: np.asarray(cols[c])[(span - 1) * rows:span * rows] for c in header}
    if shift is not None and span >= shift_from:
      shifted = np.clip(np.round(part[column].astype(np.int64) * factor),
                        values.min(), values.max())
      part[column] = shifted.astype(np.int64)
    directory = os.path.join(out_dir, SPAN_DIR.format(span))
    path = _write_rows(os.path.join(directory, DATA_FILE), header, part)
    paths.append(path)
  return paths

