"""The demo retailer's fixed data: names, products, stores, campaigns, hours — and the demo's constants."""

from __future__ import annotations

import datetime as dt

DEMO_SLUG = "demo"
DEMO_NAME = "つなぐマート"
DEMO_USERNAME = "demo"
DEFAULT_PASSWORD = "tsunagu-demo"
TOKEN_FILE = "demo-api-token"
SEED = 2205
DAYS = 90
_FLUSH_AFTER = dt.timedelta(days=1)
JST = dt.timezone(dt.timedelta(hours=9), "JST")  # Japan keeps no daylight saving time

# One source per touchpoint, named as the company would (channel values of tsunagu.events.models.Channel).
SOURCES: tuple[tuple[str, str], ...] = (
    ("web", "Webサイト"),
    ("app", "公式アプリ"),
    ("email", "メールマガジン"),
    ("line", "LINE公式アカウント"),
    ("store", "店舗POS"),
    ("call_center", "コールセンター"),
)

# sku, name, category, tax-inclusive price in yen, reduced (8%) consumption-tax rate
_PRODUCTS: tuple[tuple[str, str, str, int, bool], ...] = (
    ("F-1001", "新潟県産こしひかり 5kg", "食品", 2980, True),
    ("F-1002", "北海道牛乳 1L", "食品", 248, True),
    ("F-1003", "静岡 深蒸し緑茶 100g", "食品", 980, True),
    ("F-1004", "讃岐うどん 6食入", "食品", 458, True),
    ("F-1005", "丸大豆しょうゆ 1L", "食品", 398, True),
    ("F-1006", "国産和牛 切り落とし 300g", "食品", 1980, True),
    ("F-1007", "ドリップコーヒー 20袋", "飲料", 880, True),
    ("F-1008", "天然水 2L×6本", "飲料", 598, True),
    ("D-2001", "洗濯洗剤 詰め替え 大容量", "日用品", 548, False),
    ("D-2002", "ボックスティッシュ 5箱", "日用品", 398, False),
    ("D-2003", "トイレットペーパー 12ロール", "日用品", 598, False),
    ("D-2004", "今治タオル フェイスタオル", "日用品", 880, False),
    ("K-3001", "南部鉄器 急須", "キッチン", 6800, False),
    ("K-3002", "美濃焼 マグカップ", "キッチン", 1200, False),
    ("K-3003", "三徳包丁 ステンレス", "キッチン", 4980, False),
    ("K-3004", "伊賀焼 土鍋 8号", "キッチン", 3980, False),
    ("E-4001", "ワイヤレスイヤホン", "家電", 12800, False),
    ("E-4002", "電気ケトル 1.0L", "家電", 3980, False),
    ("E-4003", "IH炊飯器 5.5合", "家電", 24800, False),
    ("E-4004", "モバイルバッテリー 10000mAh", "家電", 2980, False),
    ("A-5001", "綿100% Tシャツ", "衣料", 1490, False),
    ("A-5002", "あったかインナー", "衣料", 1290, False),
    ("A-5003", "撥水レインジャケット", "衣料", 5990, False),
    ("C-6001", "日焼け止め SPF50+", "コスメ", 1280, False),
    ("C-6002", "化粧水 しっとり 200mL", "コスメ", 1650, False),
    ("C-6003", "ハンドクリーム 柚子の香り", "コスメ", 780, False),
    ("G-7001", "京都 抹茶スイーツ詰め合わせ", "ギフト", 2700, True),
    ("G-7002", "季節のギフトセット", "ギフト", 3240, True),
)
_SEARCHES = ("米", "お茶", "タオル", "ギフト", "炊飯器", "日焼け止め", "土鍋", "コーヒー", "イヤホン", "うどん")

# store id, name, prefecture; people mostly live near their store
_STORES: tuple[tuple[str, str, str], ...] = (
    ("S01", "渋谷店", "東京都"),
    ("S02", "新宿店", "東京都"),
    ("S03", "横浜店", "神奈川県"),
    ("S04", "名古屋栄店", "愛知県"),
    ("S05", "梅田店", "大阪府"),
    ("S06", "福岡天神店", "福岡県"),
    ("S07", "札幌大通店", "北海道"),
    ("S08", "仙台店", "宮城県"),
)
_CITIES: dict[str, tuple[str, ...]] = {
    "東京都": ("渋谷区", "新宿区", "世田谷区", "杉並区", "練馬区", "目黒区", "中野区"),
    "神奈川県": ("横浜市港北区", "横浜市青葉区", "川崎市中原区", "相模原市中央区", "藤沢市"),
    "愛知県": ("名古屋市中区", "名古屋市千種区", "豊田市", "一宮市", "岡崎市"),
    "大阪府": ("大阪市北区", "大阪市中央区", "吹田市", "豊中市", "堺市堺区"),
    "福岡県": ("福岡市中央区", "福岡市博多区", "北九州市小倉北区", "久留米市"),
    "北海道": ("札幌市中央区", "札幌市北区", "旭川市", "函館市"),
    "宮城県": ("仙台市青葉区", "仙台市泉区", "石巻市"),
    "埼玉県": ("さいたま市浦和区", "川口市", "所沢市"),
    "千葉県": ("千葉市中央区", "船橋市", "柏市"),
    "兵庫県": ("神戸市中央区", "西宮市", "姫路市"),
    "京都府": ("京都市左京区", "宇治市"),
    "広島県": ("広島市中区", "福山市"),
    "静岡県": ("静岡市葵区", "浜松市中央区"),
}
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: never a real mailbox
_EMAIL_CAMPAIGNS = (
    "週末限定セール",
    "新商品のお知らせ",
    "ポイント5倍デー",
    "会員様限定クーポン",
    "今週のおすすめ",
    "ギフト特集",
)
_LINE_CAMPAIGNS = ("LINE限定クーポン", "タイムセール速報", "店舗イベントのご案内", "友だち限定 送料無料")
_LINE_CHATS = (
    "営業時間を教えてください",
    "クーポンの使い方がわかりません",
    "注文した商品はいつ届きますか?",
    "ありがとうございました!",
)
_CALL_TOPICS = (
    "配送状況の確認",
    "返品・交換",
    "ポイントについて",
    "商品の在庫確認",
    "会員情報の変更",
    "注文のキャンセル",
)
_CALL_RESOLUTIONS = ("解決", "解決", "解決", "折り返し連絡", "エスカレーション")
_PAYMENTS_ONLINE = ("クレジットカード", "クレジットカード", "PayPay", "コンビニ払い", "代金引換")
_PAYMENTS_STORE = ("現金", "クレジットカード", "PayPay", "交通系IC", "楽天Edy")

# Hour-of-day weights (JST): evenings online, daytime in stores, office hours at the call centre.
_HOURS_ONLINE = (1, 1, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 5, 4, 3, 3, 3, 4, 5, 6, 8, 9, 8, 4)
_HOURS_STORE = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 4, 6, 5, 4, 4, 5, 6, 6, 4, 2, 0, 0, 0)
_HOURS_CALL = (0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 6, 5, 3, 4, 5, 4, 4, 3, 0, 0, 0, 0, 0, 0)

# Expected sessions per person over the 90 days at intensity 1 (scaled by activity and intensity).
_PERSONAS: dict[str, dict[str, float]] = {
    "omni": {"web": 3.0, "app": 3.0, "store": 6.0, "call": 0.4, "chat": 0.3},
    "online": {"web": 6.0, "app": 1.0, "call": 0.4},
    "app_line": {"app": 5.0, "store": 5.0, "call": 0.3, "chat": 0.4},
    "store_only": {"store": 8.0, "call": 0.6},
    "visitor": {"web": 2.0},
}
_PERSONA_WEIGHTS = (("omni", 36), ("online", 28), ("app_line", 10), ("store_only", 16), ("visitor", 10))
