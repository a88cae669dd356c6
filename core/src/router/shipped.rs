//! Tests of the model files shipped in `models/` (compiled in, so no paths).

use super::engine::Router;
use super::format::Model;
use super::route::Route;

const TEXT_MODEL: &[u8] = include_bytes!("../../../models/router.bin");
const MINILM_MODEL: &[u8] = include_bytes!("../../../models/router-minilm.bin");

#[test]
fn shipped_text_router_loads_is_small_and_routes_obvious_queries() {
    assert!(TEXT_MODEL.len() <= 64 * 1024, "{} bytes", TEXT_MODEL.len());
    let r = Router::from_bytes(TEXT_MODEL).unwrap();
    assert!(matches!(r.model(), Model::Int8(_)));
    assert!(r.reads_text());
    let cases = [
        ("movies like The Matrix", Route::GnnSimilarity),
        ("something similar to Toy Story", Route::GnnSimilarity),
        (
            "find films directed by Steven Spielberg",
            Route::VectorSearch,
        ),
        ("I'm in the mood for something cozy", Route::MoodMatching),
        ("what's new this week", Route::CatalogFreshness),
        ("latest releases on Netflix", Route::CatalogFreshness),
        ("where can I watch Fargo", Route::AvailabilityCheck),
        ("is Heat streaming on Hulu", Route::AvailabilityCheck),
        (
            "recommend something for me based on what I watched",
            Route::PersonalizedHybrid,
        ),
        // Typos and odd width/case still work.
        ("moveis simlar to Heat", Route::GnnSimilarity),
        ("ＷＨＥＲＥ CAN I STREAM FARGO", Route::AvailabilityCheck),
    ];
    for (q, want) in cases {
        let d = r.route_text(q).unwrap();
        assert_eq!(d.original_route, want, "{q}: {d:?}");
    }
}

#[test]
fn shipped_text_router_rejects_corruption() {
    for n in [0, 10, TEXT_MODEL.len() / 2, TEXT_MODEL.len() - 1] {
        assert!(Router::from_bytes(&TEXT_MODEL[..n]).is_err());
    }
    let mut c = TEXT_MODEL.to_vec();
    let mid = c.len() / 2;
    c[mid] ^= 0x10;
    assert!(Router::from_bytes(&c).is_err());
}

#[test]
fn shipped_embedding_router_loads_and_checks_dimensions() {
    let r = Router::from_bytes(MINILM_MODEL).unwrap();
    assert!(!r.reads_text());
    assert_eq!(r.embedding_dim(), 384);
    assert!(r.route_embedding(&[0.05; 384]).is_ok());
    assert!(r.route_embedding(&[0.05; 383]).is_err());
    let mut nan = vec![0.05f32; 384];
    nan[7] = f32::NAN;
    assert!(r.route_embedding(&nan).is_err());
    assert!(r.route_text("movies like heat").is_err());
}
