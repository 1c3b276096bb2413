//! `module_summary` and `layer_info`: fastai's table, rows in definition order, shapes, counts and training mode.

use tiny_nn::{Module, layer_info, module_summary, resnet18, simple_cnn};
use tiny_tensor::Tensor;

#[test]
fn simple_cnns_summary_is_fastais_table() {
    let model = simple_cnn(10).unwrap();
    let table = module_summary(&model, &Tensor::zeros(&[1, 3, 64, 64]), 64, &|_| true).unwrap();
    println!("{table}");
    let want = "\
Sequential (Input shape: 64 x 3 x 64 x 64)
============================================================================
Layer (type)         Output Shape         Param #    Trainable 
============================================================================
                     64 x 16 x 32 x 32   
ConvLayer                                 448        True      
____________________________________________________________________________
                     64 x 32 x 16 x 16   
ConvLayer                                 4640       True      
____________________________________________________________________________
                     64 x 64 x 8 x 8     
ConvLayer                                 18496      True      
____________________________________________________________________________
                     64 x 128 x 4 x 4    
ConvLayer                                 73856      True      
____________________________________________________________________________
                     64 x 128            
AdaptivePool                                                   
____________________________________________________________________________
                     64 x 10             
Linear                                    1290       True      
____________________________________________________________________________

Total params: 98,730
Total trainable params: 98,730
Total non-trainable params: 0
";
    assert_eq!(table, want);
}

#[test]
fn resnet18s_layer_info_lists_every_leaf_in_order_counts_frozen_parameters_and_keeps_the_mode() {
    let model = resnet18(10).unwrap();
    model.train(true);
    // The head trains, the body is frozen, as after fastai's `freeze()`.
    let head: Vec<usize> =
        model.named_parameters().iter().filter(|(n, _)| n.starts_with("fc.")).map(|(_, p)| p.id()).collect();
    let infos = layer_info(&model, &Tensor::zeros(&[1, 3, 64, 64]), &|p| head.contains(&p.id())).unwrap();
    // conv1, bn1, maxpool; 8 blocks of 4 layers and 3 shortcuts of 2; avgpool, fc.
    assert_eq!(infos.len(), 3 + 8 * 4 + 3 * 2 + 2);
    let paths: Vec<&str> = infos.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(&paths[..5], ["conv1", "bn1", "maxpool", "layer1.0.conv1", "layer1.0.bn1"]);
    assert_eq!(&paths[paths.len() - 2..], ["avgpool", "fc"]);
    let by_path = |p: &str| infos.iter().find(|i| i.path == p).unwrap();
    assert_eq!(by_path("conv1").output.as_deref(), Some(&[1, 64, 32, 32][..]));
    assert_eq!(by_path("layer2.0.downsample.0").output.as_deref(), Some(&[1, 128, 8, 8][..]));
    assert!(by_path("bn1").same_shape && !by_path("conv1").same_shape);
    assert_eq!((by_path("fc").params, by_path("fc").trainable), (5130, Some(true)));
    assert_eq!((by_path("conv1").params, by_path("conv1").trainable), (9408, Some(false)));
    assert_eq!(by_path("maxpool").trainable, None);
    assert_eq!(infos.iter().map(|i| i.params).sum::<usize>(), model.num_parameters());
    let table = module_summary(&model, &Tensor::zeros(&[1, 3, 64, 64]), 8, &|p| head.contains(&p.id())).unwrap();
    assert!(table.starts_with("ResNet (Input shape: 8 x 3 x 64 x 64)"), "{table}");
    assert!(table.ends_with(
        "Total params: 11,181,642\nTotal trainable params: 5,130\nTotal non-trainable params: 11,176,512\n"
    ));
    // Evaluation mode for the pass (batchnorm's running statistics untouched), training mode again afterwards.
    assert!(model.bn1.is_training());
    assert_eq!(model.bn1.num_batches_tracked.to_vec(), [0.0]);
    model.train(false);
    layer_info(&model, &Tensor::zeros(&[1, 3, 64, 64]), &|_| true).unwrap();
    assert!(!model.bn1.is_training());
    // A shape the model refuses is its error, and no hook stays behind.
    assert!(layer_info(&model, &Tensor::zeros(&[1, 4, 64, 64]), &|_| true).is_err());
    for layer in [&model.conv1 as &dyn Module, &model.fc, &model.bn1] {
        assert_eq!(format!("{:?}", layer.hooks().unwrap()), "Hooks(0)");
    }
}
