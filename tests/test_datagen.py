import csv

import numpy as np
import pytest

from datagen import taobao
from models.config import load_config
from pipeline import configs


def _auc(labels, scores):
  labels = np.asarray(labels)
  ranks = np.argsort(np.argsort(scores)) + 1
  pos = labels.sum()
  return (ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(labels) - pos))


@pytest.fixture(scope="module")
def generated():
  return taobao.generate(100_000, seed=3)


def test_columns_are_easyrec_taobao_order(tmp_path):
  path = taobao.write_csv(str(tmp_path), 50, seed=1)
  with open(path) as f:
    header = next(csv.reader(f))
  assert header == [c.name for c in load_config(configs.CONFIG_PATH).columns]
  assert tuple(header) == taobao.columns()
  assert ",".join(header) == (  # EasyRec aitm_on_taobao.config input_fields
      "clk,buy,pid,adgroup_id,cate_id,campaign_id,customer,brand,user_id,cms_segid,"
      "cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,occupation,"
      "new_user_class_level,tag_category_list,tag_brand_list,price")


def test_rates_are_realistic(generated):
  cols, truth = generated
  p_click, p_buy = truth["clk"], truth["buy"]
  assert 0.04 < np.mean(cols["clk"]) < 0.06
  assert 0.0035 < np.mean(cols["buy"]) < 0.0065
  assert abs(p_click.mean() - 0.05) < 1e-3 and abs(p_buy.mean() - 0.005) < 1e-4


def test_buy_implies_click(generated):
  cols, _ = generated
  clk, buy = np.array(cols["clk"]), np.array(cols["buy"])
  assert buy.sum() > 0
  assert np.all(clk[buy == 1] == 1)


def test_labels_carry_learnable_signal(generated):
  cols, truth = generated
  assert _auc(cols["clk"], truth["clk"]) > 0.75
  assert _auc(cols["buy"], truth["buy"]) > 0.8


def test_ids_look_numeric_tags_split_and_values_go_missing(generated):
  cols, _ = generated
  assert all(v.isdigit() for v in cols["user_id"][:100])
  assert any("|" in v for v in cols["tag_category_list"])
  assert "" in cols["pvalue_level"] and "" in cols["tag_brand_list"]
  levels = np.array(cols["price"], int)
  assert levels.min() >= 0 and levels.max() <= 49 and len(set(levels)) > 20


def test_same_seed_same_data():
  a, _ = taobao.generate(500, seed=5)
  b, _ = taobao.generate(500, seed=5)
  c, _ = taobao.generate(500, seed=6)
  assert a == b and a != c


def test_tag_lists_do_not_depend_on_the_block_size_of_their_scores(monkeypatch):
  # _tags scores users a block at a time (the whole users x tags matrix grows with
  # the square of the rows); blocks that split the users unevenly change nothing.
  cols, truth = taobao.generate(6000, seed=3)
  monkeypatch.setattr(taobao, "_TAG_BLOCK", 7)
  blocked, blocked_truth = taobao.generate(6000, seed=3)
  assert taobao._sizes(6000).users > 7 * 20
  assert cols == blocked
  np.testing.assert_array_equal(truth["buy"], blocked_truth["buy"])


def test_truth_file(tmp_path):
  truth = tmp_path / "truth.csv"
  taobao.write_csv(str(tmp_path / "data"), 100, seed=1, truth_path=str(truth))
  values = np.loadtxt(truth, delimiter=",", skiprows=1)
  assert values.shape == (100, 2)
  assert np.all(values[:, 1] <= values[:, 0])


def test_cart_step_sits_between_click_and_buy(tmp_path):
  cols, truth = taobao.generate(100_000, seed=3, with_cart=True)
  clk, cart, buy = (np.array(cols[c]) for c in ("clk", "cart", "buy"))
  assert np.all(cart <= clk) and np.all(buy <= cart) and buy.sum() > 0
  assert 0.01 < cart.mean() < 0.02
  assert np.all(truth["buy"] <= truth["cart"] + 1e-12)
  assert np.all(truth["cart"] <= truth["clk"] + 1e-12)
  assert _auc(cart, truth["cart"]) > 0.8
  # The purchase step is the same as without the cart step.
  plain, _ = taobao.generate(100_000, seed=3)
  assert plain["buy"] == cols["buy"]
  path = taobao.write_csv(str(tmp_path), 10, seed=1, with_cart=True)
  with open(path) as f:
    assert next(csv.reader(f))[:3] == ["clk", "cart", "buy"]


def test_truth_without_personal_parts_keeps_rows_and_ranks_below_the_oracle():
  from sklearn.metrics import roc_auc_score
  cols, truth = taobao.generate(50_000, seed=4)
  same, shared = taobao.generate(50_000, seed=4, personal_parts=False)
  assert same == cols
  for label in ("clk", "buy"):
    y = np.asarray(cols[label])
    full, partial = roc_auc_score(y, truth[label]), roc_auc_score(y, shared[label])
    assert 0.6 < partial < full - 0.01, (label, partial, full)
    assert np.all(shared["buy"] <= shared["clk"])
  with pytest.raises(ValueError, match="personal_parts"):
    taobao.generate(1000, with_cart=True, personal_parts=False)


def test_impressions_repeat_user_ad_pairs_with_labels_drawn_anew():
  from collections import Counter
  cols, truth = taobao.generate(100_000, seed=3)
  plain, plain_truth = taobao.generate(100_000, seed=3, repeats=taobao.NO_REPEATS)
  pairs = list(zip(cols["user_id"], cols["adgroup_id"]))
  plain_pairs = list(zip(plain["user_id"], plain["adgroup_id"]))
  shared, plain_shared = Counter(pairs), Counter(plain_pairs)
  # Most rows share their user-ad pair with another row; without repeats, about a third.
  assert np.mean([shared[p] > 1 for p in pairs]) > 0.5
  assert np.mean([plain_shared[p] > 1 for p in plain_pairs]) < 0.4
  # Each user's impressions concentrate on a few ads: a user's most shown ad takes
  # a larger share of the user's impressions than without repeats.
  def top_share(rows):
    by_user = {}
    for user, ad in rows:
      by_user.setdefault(user, Counter())[ad] += 1
    heavy = [c for c in by_user.values() if sum(c.values()) >= 20]
    return np.mean([max(c.values()) / sum(c.values()) for c in heavy])
  assert top_share(pairs) > top_share(plain_pairs) + 0.05
  # Copies of one impression carry different labels: drawn anew from the same
  # probability, which is the same for every copy.
  clicks = {}
  for i, key in enumerate(zip(pairs, cols["pid"])):
    clicks.setdefault(key, []).append(i)
  copies = [rows for rows in clicks.values() if len(rows) >= 20]
  assert copies
  assert any(0 < np.mean([cols["clk"][i] for i in rows]) < 1 for rows in copies)
  assert all(np.ptp(truth["clk"][rows]) < 1e-12 for rows in copies)
  # The rates hold; users, prices and the rest of the world are drawn as without repeats.
  assert 0.04 < np.mean(cols["clk"]) < 0.06 and 0.0035 < np.mean(cols["buy"]) < 0.0065
  assert cols["user_id"] == plain["user_id"] and cols["pid"] == plain["pid"]
  with pytest.raises(ValueError, match="share"):
    taobao.Repeats(share=1.5)
