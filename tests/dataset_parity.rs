//! The stratified subsample reproduces the reference suite's selections on the
//! real When2Call test file (vectors from reference_spec §7).

mod common;

use w2c::dataset;

#[test]
fn subsample_matches_reference_vectors() {
    let ds = dataset::load(&common::shared_dataset()).unwrap();
    assert_eq!(ds.examples.len(), 300);
    assert_eq!(ds.label_counts(), [0, 100, 100, 100]);

    let ids = |n, seed| -> Vec<String> {
        dataset::select(&ds, Some(n), seed)
            .into_iter()
            .map(|e| e.uuid)
            .collect()
    };
    let five = ids(5, 11);
    assert_eq!(
        five,
        [
            "e086e5ac-b445-46ec-bf3e-78c1b8a9bf07",
            "839799e3-747f-460e-8d55-adff1da3a83b",
            "7d5d93e3-2efe-49a1-98a4-3b042b3fc9f5",
            "af4ef0a7-3d97-486a-91cf-855ea95a8a03",
            "dfd37224-8d90-40c6-873c-925a4c800559",
            "e9bee674-7eb1-44c6-bfc7-089416f88849",
            "4ded9aad-efe8-4d82-986b-1fd902a55e79",
            "7c48068d-ca9d-417f-8de4-16980ce5d9f5",
            "2c77ba13-cb21-4d47-b661-12edddab1820",
            "2dcf86e0-8059-402a-ae6f-2f2f3e3c399c",
            "78953d6f-db44-4bec-9c75-2335422de2b3",
            "b30e4508-9ec2-458c-820d-51baed9c6c11",
            "e1f112bf-8ef1-42e2-aae1-5f36e4375263",
            "41c0561e-01d2-42ee-b07b-e5dce86fd737",
            "518d849f-c59d-49ed-9c5e-ef8e77bc4918",
        ]
    );
    let fifty = ids(50, 42);
    assert_eq!(fifty.len(), 150);
    assert_eq!(
        &fifty[..5],
        [
            "7c48068d-ca9d-417f-8de4-16980ce5d9f5",
            "a3199374-f874-4c61-a188-bc3772d76afb",
            "fd06b3ae-98cc-4027-9826-ceefe212d4d5",
            "048d40aa-b5c8-431a-8080-1281006f8364",
            "0e25cbd9-325e-4bba-94b4-e671cd1fe228",
        ]
    );
    assert_eq!(fifty[149], "9ce3bb5b-0082-4734-9c65-9ed2d46192da");
    let all = ids(1000, 1);
    assert_eq!(all.len(), 300);
    assert_eq!(all[0], "c16c38aa-4542-421c-a9e2-e6fd1932b268");
}

#[test]
fn shared_file_hash_is_the_published_one() {
    let ds = dataset::load(&common::shared_dataset()).unwrap();
    assert_eq!(
        ds.sha256,
        "0b710578e3b02479e5acf5688140ec5edf71383fa5c093481c7536b57fd13b25"
    );
    // 17 cannot_answer rows have no tools (the ToolHall denominator).
    let no_tools = ds.examples.iter().filter(|e| e.tools.is_empty()).count();
    assert_eq!(no_tools, 17);
}
