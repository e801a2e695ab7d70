// What an --image (or `forkd image build`) argument names: a built-in
// recipe, or a recipe file read here, on the machine the command runs on.
import { isRecipePath, loadRecipeFile, type Recipe } from '../image/index.js';

/** A built-in recipe's name, or the recipe of a file (anything with a slash or a .yaml/.yml/.json name). */
export async function recipeRef(image: string): Promise<string | Recipe> {
  return isRecipePath(image) ? loadRecipeFile(image) : image;
}
