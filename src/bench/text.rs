//! Deterministic made-up field data: a small pseudo-random generator (so that two runs with
//! the same `--seed` make the same choices) and Japanese narratives of a given length, written
//! the way counsellors write their 経過記録. All names are fictional.

/// SplitMix64: small, fast and good enough to pick cases, kinds and sentences.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// A generator for the `stream`-th device (or purpose) derived from `seed`.
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut base = Self::new(seed.wrapping_add(stream.wrapping_mul(0xd1b5_4a32_d192_ed03)));
        base.next_u64();
        base
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `k` distinct indices of `0..n` (all of them if `k` ≥ `n`).
    pub fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k.min(n));
        all
    }
}

/// Who a sentence is about or with.
const PEOPLE: &[&str] = &[
    "本人",
    "母親",
    "父親",
    "長男",
    "次男",
    "長女",
    "祖母",
    "祖父",
    "叔母",
    "民生委員",
    "近隣住民",
    "学校の担任",
    "スクールソーシャルワーカー",
    "保健師",
    "ケアマネジャー",
    "大家",
    "管理会社の担当者",
    "主治医",
    "就労支援員",
    "社協の担当者",
];

/// What a sentence is about.
const TOPICS: &[&str] = &[
    "家賃の滞納",
    "電気料金の督促",
    "通院の中断",
    "長期の欠席",
    "ごみの堆積",
    "介護サービスの利用",
    "生活福祉資金",
    "就労支援",
    "障害者手帳の申請",
    "食料支援",
    "学用品の購入",
    "携帯電話の料金",
    "借入金の返済",
    "服薬の管理",
    "弟の送り迎え",
    "多頭飼育",
    "高校進学",
    "年金の手続き",
    "国民健康保険の更新",
    "デイサービスの見学",
    "ひきこもりの期間",
    "家族関係",
    "夜間の徘徊",
    "水道の停止予告",
];

/// What was seen.
const OBSERVATIONS: &[&str] = &[
    "表情は前回より穏やかだった",
    "疲れた様子で言葉少なだった",
    "部屋の明かりがついていた",
    "郵便物がたまっていた",
    "洗濯物が干してあった",
    "玄関に自転車がなかった",
    "室内から物音がした",
    "カーテンが閉め切られていた",
    "庭の草が伸び放題だった",
    "新聞が数日分たまっていた",
    "声に張りがあった",
    "目を合わせようとしなかった",
    "台所から調理のにおいがした",
    "郵便受けの手紙はなくなっていた",
];

/// Sentence patterns: `{p}`/`{q}` a person, `{t}` a topic, `{o}` an observation, `{h}` a
/// time, `{n}` a number, `{d}` a date, `{a}` an address.
const PATTERNS: &[&str] = &[
    "{h}に{a}の自宅を訪問したが、インターホンに応答はなかった。",
    "{p}と玄関先で{n}分ほど話し、{t}について聞き取った。",
    "{p}から{t}について相談があり、{q}と連携して対応することを伝えた。",
    "{p}に{t}の案内を手渡し、{d}までに返事をもらう約束をした。",
    "{p}の様子を{q}に確認したところ、{o}とのこと。",
    "訪問時、{o}。{t}の状況は変わっていないとみられる。",
    "{h}、{p}の携帯電話に連絡したが留守番電話に切り替わったため、伝言を残した。",
    "{q}によると、{p}は{d}以降{t}が続いている。",
    "{t}について{p}と話し合い、次回{d}に{q}も交えて確認することにした。",
    "{p}は{t}を気にしており、{n}回目の面談で初めて自分から話題にした。",
    "{a}付近で{p}を見かけたが、声をかけると足早に立ち去った。",
    "{q}に{t}の手続きを照会し、必要書類を{p}に伝えることになった。",
    "郵便受けに手紙と相談窓口のチラシを入れた。{o}。",
    "{p}は「{t}のことはもう少し考えたい」と話した。無理に進めず、{d}に再訪する。",
];

/// Kanji for made-up place names (so that addresses vary like real ones do).
const PLACE_KANJI: &[char] = &[
    '東', '西', '南', '北', '中', '上', '下', '新', '本', '大', '小', '若', '緑', '桜', '松', '竹', '梅', '森', '川',
    '田', '野', '原', '台', '坂', '宮', '山', '谷', '浜', '江', '崎', '丘', '平', '富', '美', '春', '青',
];

/// A made-up address, e.g. `桜台三丁目12番`.
fn address(rng: &mut Rng) -> String {
    const NUMERALS: [&str; 9] = ["一", "二", "三", "四", "五", "六", "七", "八", "九"];
    format!("{}{}{}丁目{}番", rng.pick(PLACE_KANJI), rng.pick(PLACE_KANJI), rng.pick(&NUMERALS), 1 + rng.below(30))
}

/// One sentence of a narrative.
fn sentence(rng: &mut Rng) -> String {
    let pattern = *rng.pick(PATTERNS);
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '{' {
            out.push(c);
            continue;
        }
        let slot = chars.next().unwrap_or('x');
        let _closing = chars.next();
        match slot {
            'p' | 'q' => out.push_str(rng.pick::<&str>(PEOPLE)),
            't' => out.push_str(rng.pick::<&str>(TOPICS)),
            'o' => out.push_str(rng.pick::<&str>(OBSERVATIONS)),
            'h' => out.push_str(&format!("{}時{}分", 9 + rng.below(10), 5 * rng.below(12))),
            'n' => out.push_str(&(2 + rng.below(40)).to_string()),
            'd' => out.push_str(&format!("{}月{}日", 1 + rng.below(12), 1 + rng.below(28))),
            'a' => out.push_str(&address(rng)),
            _ => {}
        }
    }
    out
}

/// What a counsellor appends when amending a narrative.
const ADDENDA: &[&str] = &[
    "（追記）夕方に再訪したところ、母親が応対した。",
    "（追記）学校から、今週は二日登校したと連絡があった。",
    "（追記）手紙を読んだと本人から短いメッセージが届いた。",
    "（追記）近隣住民からの情報は伝聞であり、確認が必要。",
];

/// A narrative of about `chars` characters (at least one sentence).
pub fn narrative(rng: &mut Rng, chars: usize) -> String {
    let mut text = String::new();
    while text.chars().count() < chars {
        text.push_str(&sentence(rng));
    }
    if text.chars().count() > chars && chars > 0 {
        text = text.chars().take(chars).collect();
        text.push('。');
    }
    text
}

/// A sentence to add to an existing narrative.
pub fn addendum(rng: &mut Rng) -> &'static str {
    rng.pick::<&str>(ADDENDA)
}

/// Fictional family names for the households of the seeded cases.
const FAMILY_NAMES: &[(&str, &str)] = &[
    ("山本", "やまもと"),
    ("佐々木", "ささき"),
    ("中村", "なかむら"),
    ("小林", "こばやし"),
    ("加藤", "かとう"),
    ("吉田", "よしだ"),
    ("松本", "まつもと"),
    ("井上", "いのうえ"),
];

/// A fictional family name and its reading.
pub fn family(rng: &mut Rng) -> (&'static str, &'static str) {
    *rng.pick(FAMILY_NAMES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narratives_have_the_requested_length_and_are_deterministic() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let text = narrative(&mut a, 300);
        assert_eq!(text, narrative(&mut b, 300));
        assert!((300..=301).contains(&text.chars().count()));
        assert!(!narrative(&mut a, 1).is_empty());
    }

    #[test]
    fn distinct_indices_are_distinct() {
        let mut rng = Rng::new(1);
        let mut picked = rng.distinct(10, 5);
        picked.sort_unstable();
        picked.dedup();
        assert_eq!(picked.len(), 5);
        assert_eq!(rng.distinct(3, 5).len(), 3);
    }
}
